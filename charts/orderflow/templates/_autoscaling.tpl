{{/*
Autoscaling of the two queue consumers, shared by status-consumer.yaml and
delivery-service.yaml: a KEDA ScaledObject on the consumed queue's depth
(keda.enabled), else a CPU HorizontalPodAutoscaler. Either way the Deployment
renders no `replicas`, so `helm upgrade` never resets what the autoscaler chose.
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
  advanced:
    # The HPA KEDA manages keeps KEDA's own name (keda-hpa-<name>), so switching from
    # keda.enabled=false (an HPA named like the Deployment) never collides with it.
    horizontalPodAutoscalerConfig:
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
      authenticationRef:
        name: {{ include "orderflow.fullname" $root }}-sqs
      metadata:
        queueURL: {{ include "orderflow.queueUrl" (dict "root" $root "queue" .queue) | quote }}
        awsRegion: {{ $root.Values.pipeline.spec.sqs.region | quote }}
        {{- with $root.Values.pipeline.spec.sqs.endpoint }}
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
