{{/*
Autoscaling of the two queue consumers, shared by status-consumer.yaml and
delivery-service.yaml: a KEDA ScaledObject on the consumed queue's depth
(keda.enabled), else a CPU HorizontalPodAutoscaler. Either way the Deployment
renders no `replicas`, so `helm upgrade` never resets what the autoscaler chose.

Switching keda.enabled either way is one `helm upgrade`: Helm creates or updates the
new objects before it deletes the old ones, so for a moment the chart's HPA and the
ScaledObject both exist. KEDA's admission webhook refuses a ScaledObject whose
Deployment an HPA it does not own already scales, unless that HPA carries
`validations.keda.sh/hpa-ownership: "false"` (the chart's HPA does). The HPA KEDA
makes has its own name (keda-hpa-<name>), so neither switch adopts or deletes the
other's HPA: Helm deletes the chart's, Kubernetes' garbage collector KEDA's with its
ScaledObject. KEDA's ownership transfer (scaledobject.keda.sh/transfer-hpa-ownership)
would name KEDA's HPA like the chart's, and switching back would then hand Helm an
HPA still owned by the ScaledObject it deletes next. charts/tests/test_keda_switch.py
plays both upgrades through Helm's order, KEDA's webhook and the garbage collector.
*/}}

{{/* orderflow.consumerAutoscaler: (dict "root" $ "component" C "values" COMPONENT_VALUES "queue" QUEUE_NAME) */}}
{{- define "orderflow.consumerAutoscaler" -}}
{{- $root := .root -}}
{{- $a := .values.autoscaling -}}
{{- $name := include "orderflow.componentName" . -}}
{{- if $root.Values.keda.enabled }}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "orderflow.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicaCount: {{ $a.minReplicas }}
  maxReplicaCount: {{ $a.maxReplicas }}
  pollingInterval: {{ $root.Values.keda.pollingInterval }}
  cooldownPeriod: {{ $root.Values.keda.cooldownPeriod }}
  {{- if eq (int $a.minReplicas) 0 }}
  # Without a fallback a scaler error (queue unreachable, credentials refused) counts
  # as an idle queue: KEDA scales to zero after cooldownPeriod and nothing wakes the
  # consumer while the error lasts. With one, KEDA never scales to zero on an error and
  # the HPA runs fallback.replicas after failureThreshold failed polls.
  fallback:
    failureThreshold: {{ $root.Values.keda.fallback.failureThreshold }}
    replicas: {{ $root.Values.keda.fallback.replicas }}
  {{- end }}
  advanced:
    horizontalPodAutoscalerConfig:
      # KEDA's default name, spelt out so it stays within 63 characters and never
      # equals the chart's HPA (keda.enabled=false) named like the Deployment.
      name: {{ printf "keda-hpa-%s" $name | trunc 63 | trimSuffix "-" }}
      behavior:
        # Remove pods slowly: a consumer stopping releases what it has not started and
        # finishes its batch, but a queue that drains in bursts should not flap.
        scaleDown:
          stabilizationWindowSeconds: {{ $root.Values.keda.scaleDownStabilizationSeconds }}
          policies:
            - {type: Pods, value: 1, periodSeconds: 60}
        scaleUp:
          stabilizationWindowSeconds: 0
          policies:
            - {type: Percent, value: 100, periodSeconds: 30}
  triggers:
    - type: aws-sqs-queue
      name: {{ .queue | replace "." "-" }}
      # KEDA's default, explicit: its webhook admits a fallback only on AverageValue triggers.
      metricType: AverageValue
      authenticationRef:
        name: {{ include "orderflow.fullname" $root }}-sqs
      metadata:
        queueURL: {{ include "orderflow.queueUrl" (dict "root" $root "queue" .queue) | quote }}
        awsRegion: {{ $root.Values.pipeline.spec.sqs.region | quote }}
        {{- with include "orderflow.kedaSqsEndpoint" $root }}
        awsEndpoint: {{ . | quote }}
        {{- end }}
        queueLength: {{ $a.queueLength | quote }}
        activationQueueLength: {{ $a.activationQueueLength | quote }}
        scaleOnInFlight: {{ $a.scaleOnInFlight | quote }}
{{- else }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "orderflow.labels" . | nindent 4 }}
  annotations:
    # KEDA's webhook skips this HPA, so switching to keda.enabled=true can create the
    # ScaledObject before Helm deletes this HPA (see the top of this file).
    validations.keda.sh/hpa-ownership: "false"
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: {{ $root.Values.keda.scaleDownStabilizationSeconds }}
      policies:
        - {type: Pods, value: 1, periodSeconds: 60}
{{- end }}
{{- end -}}
