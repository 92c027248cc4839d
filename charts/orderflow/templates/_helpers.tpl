{{/*
Helpers shared by every template: names, labels, images, the pipeline's published
names, pod and container security, probes, scheduling, and the checks that fail
an install with a clear message when values contradict each other.
*/}}

{{/* orderflow.name: the chart name, or nameOverride. */}}
{{- define "orderflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* orderflow.fullname: prefix of every resource name: the release name, plus the chart
name unless the release name already contains it; fullnameOverride replaces both.
Kept to 40 characters so that "<fullname>-delivery-service-<hash>" fits in 63. */}}
{{- define "orderflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* orderflow.componentName: "<fullname>-<component>", the name of a component's objects.
Call with (dict "root" $ "component" "order-api"). */}}
{{- define "orderflow.componentName" -}}
{{- printf "%s-%s" (include "orderflow.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* orderflow.chart: chart name and version, for the helm.sh/chart label. */}}
{{- define "orderflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* orderflow.selectorLabels: the labels a component's Service, PDB, NetworkPolicy and
spread constraints select on; never changes between upgrades. (dict "root" $ "component" C) */}}
{{- define "orderflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orderflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* orderflow.labels: the standard labels of every object; component is optional. */}}
{{- define "orderflow.labels" -}}
helm.sh/chart: {{ include "orderflow.chart" .root }}
{{- if .component }}
{{ include "orderflow.selectorLabels" . }}
{{- else }}
app.kubernetes.io/name: {{ include "orderflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: orderflow
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* orderflow.image: "<registry>/<repository>:<tag>" (or "@<digest>"), tag defaulting to
the chart's appVersion. (dict "root" $ "repository" R) */}}
{{- define "orderflow.image" -}}
{{- $img := .root.Values.image -}}
{{- if $img.digest -}}
{{- printf "%s/%s@%s" $img.registry .repository $img.digest -}}
{{- else -}}
{{- printf "%s/%s:%s" $img.registry .repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* orderflow.serviceAccountName: a component's ServiceAccount. (dict "root" $ "component" C "sa" VALUES) */}}
{{- define "orderflow.serviceAccountName" -}}
{{- if .sa.create -}}
{{- default (include "orderflow.componentName" .) .sa.name -}}
{{- else -}}
{{- default "default" .sa.name -}}
{{- end -}}
{{- end -}}

{{/* orderflow.pipelineName: the OrderPipeline's name, which prefixes what the controller publishes. */}}
{{- define "orderflow.pipelineName" -}}
{{- default (include "orderflow.fullname" .) .Values.pipeline.name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* orderflow.pipelineConfigMap / ordersDbSecret / deliveryDbSecret: the names the controller
publishes (API contract: <pipeline>-config, <pipeline>-orders-db, <pipeline>-delivery-db). */}}
{{- define "orderflow.pipelineConfigMap" -}}
{{- printf "%s-config" (include "orderflow.pipelineName" .) -}}
{{- end -}}
{{- define "orderflow.ordersDbSecret" -}}
{{- printf "%s-orders-db" (include "orderflow.pipelineName" .) -}}
{{- end -}}
{{- define "orderflow.deliveryDbSecret" -}}
{{- printf "%s-delivery-db" (include "orderflow.pipelineName" .) -}}
{{- end -}}

{{/* orderflow.jwtSecretName / jwtSecretKey: the Secret holding the JWT signing key bundle, and
its key: jwt.existingSecret (jwt.secretKey), else the one the controller creates once and never
changes, <pipeline>-jwt (jwt.pem). Nothing is generated at render time (docs/KUBERNETES.md, GitOps). */}}
{{- define "orderflow.jwtSecretName" -}}
{{- default (printf "%s-jwt" (include "orderflow.pipelineName" .)) .Values.jwt.existingSecret -}}
{{- end -}}
{{- define "orderflow.jwtSecretKey" -}}
{{- if .Values.jwt.existingSecret }}{{ .Values.jwt.secretKey }}{{ else }}jwt.pem{{ end -}}
{{- end -}}

{{/* orderflow.queueUrl: the URL KEDA polls for a queue name. KEDA reads the queue name from
the URL's path (/<account>/<name>), so it is a full URL: KEDA's view of the endpoint
(orderflow.kedaSqsEndpoint) for ElasticMQ or an emulator, AWS's regional one otherwise.
(dict "root" $ "queue" NAME) */}}
{{- define "orderflow.queueUrl" -}}
{{- $sqs := .root.Values.pipeline.spec.sqs -}}
{{- $account := include "orderflow.awsAccountId" .root -}}
{{- with include "orderflow.kedaSqsEndpoint" .root -}}
{{- printf "%s/%s/%s" (trimSuffix "/" .) $account $.queue -}}
{{- else -}}
{{- printf "https://sqs.%s.amazonaws.com/%s/%s" $sqs.region $account .queue -}}
{{- end -}}
{{- end -}}

{{/* orderflow.kedaSqsEndpoint: the SQS endpoint as KEDA's operator reaches it (empty = AWS). The
scaler runs in KEDA's namespace, where a bare Service name such as http://elasticmq:9324 does not
resolve: keda.awsEndpoint when set, else pipeline.spec.sqs.endpoint with a host that has no dot
(and is no IP literal) qualified as <host>.<release namespace>.svc. */}}
{{- define "orderflow.kedaSqsEndpoint" -}}
{{- $endpoint := .Values.pipeline.spec.sqs.endpoint -}}
{{- if .Values.keda.awsEndpoint -}}
{{- .Values.keda.awsEndpoint -}}
{{- else if $endpoint -}}
{{- $u := urlParse $endpoint -}}
{{- $hostPort := splitList ":" $u.host -}}
{{- $host := first $hostPort -}}
{{- if or (contains "." $host) (hasPrefix "[" $u.host) (not $host) -}}
{{- $endpoint -}}
{{- else -}}
{{- $port := ternary (printf ":%s" (last $hostPort)) "" (gt (len $hostPort) 1) -}}
{{- urlJoin (merge (dict "host" (printf "%s.%s.svc%s" $host .Release.Namespace $port)) $u) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* orderflow.awsAccountId: keda.awsAccountId as its 12 digits. `--set keda.awsAccountId=...` gives
a number, and so does an unquoted id in a values file, which YAML reads as a number (a leading zero
is lost; a float would print as 1.23456789012e+11): a number is printed as an integer zero-padded
to 12 digits, which restores exactly the zeros a 12-digit id lost. */}}
{{- define "orderflow.awsAccountId" -}}
{{- $id := .Values.keda.awsAccountId -}}
{{- if kindIs "string" $id -}}
{{- $id -}}
{{- else -}}
{{- printf "%012d" (int64 $id) -}}
{{- end -}}
{{- end -}}

{{/* orderflow.urlPort: the port of a URL (its explicit port, else 443 for https, 80 for
http). (dict "url" U "default" N) returns N for an empty URL. */}}
{{- define "orderflow.urlPort" -}}
{{- if not .url -}}
{{- .default -}}
{{- else -}}
{{- $u := urlParse .url -}}
{{- $hostPort := splitList ":" $u.host -}}
{{- if gt (len $hostPort) 1 -}}
{{- last $hostPort -}}
{{- else if eq $u.scheme "https" -}}
443
{{- else if eq $u.scheme "http" -}}
80
{{- else -}}
{{- .default -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* orderflow.dnsEgress: a NetworkPolicy egress rule to cluster DNS: networkPolicy.dns.peers on
each of networkPolicy.dns.ports, UDP and TCP. */}}
{{- define "orderflow.dnsEgress" -}}
- to:
    {{- toYaml .Values.networkPolicy.dns.peers | nindent 4 }}
  ports:
    {{- range .Values.networkPolicy.dns.ports }}
    - {port: {{ . }}, protocol: UDP}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end -}}

{{/* orderflow.egressRule: egress on some TCP ports, to the given peers or, with none, anywhere.
(dict "to" PEERS "ports" PORTS) */}}
{{- define "orderflow.egressRule" -}}
- ports:
    {{- range .ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* orderflow.validateKedaIdentity: KEDA's pod identity must be one it can resolve. identityOwner
workload (without a roleArn) reads the eks.amazonaws.com/role-arn annotation of each scaled
Deployment's ServiceAccount (KEDA's resolver, PodIdentityAnnotationEKS): EKS Pod Identity sets
none, and a ServiceAccount the chart creates must carry one. */}}
{{- define "orderflow.validateKedaIdentity" -}}
{{- $v := .Values -}}
{{- $auth := $v.keda.authentication -}}
{{- if and $v.keda.enabled (not $v.pipeline.spec.sqs.credentialsSecretRef.name) (eq $auth.podIdentityProvider "aws") (eq $auth.identityOwner "workload") (not $auth.roleArn) -}}
{{- if eq $v.awsIdentity "eksPodIdentity" -}}
{{- fail "awsIdentity is eksPodIdentity, but keda.authentication.identityOwner workload makes KEDA assume the role named by the scaled ServiceAccount's eks.amazonaws.com/role-arn annotation (IRSA), which EKS Pod Identity does not set. Use identityOwner keda (a Pod Identity association for KEDA's operator, whose role may read the queues) or keda.authentication.roleArn (a role KEDA's operator may assume)." -}}
{{- end -}}
{{- range list (list "statusConsumer" $v.statusConsumer $v.statusConsumer.enabled) (list "deliveryService" $v.deliveryService true) -}}
{{- $c := index . 1 -}}
{{- if and (index . 2) $c.autoscaling.enabled $c.serviceAccount.create (not (index (default (dict) $c.serviceAccount.annotations) "eks.amazonaws.com/role-arn")) -}}
{{- fail (printf "keda.authentication.identityOwner is workload (IRSA), so KEDA assumes the role in the eks.amazonaws.com/role-arn annotation of %s's ServiceAccount, which has none: set %s.serviceAccount.annotations, or keda.authentication.identityOwner keda / roleArn." (index . 0) (index . 0)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* orderflow.awsIdentityEgress: with EKS Pod Identity (awsIdentity eksPodIdentity and no credentials
Secret) a pod's AWS SDK fetches its credentials from the Pod Identity agent on the node, at
link-local 169.254.170.23 (IPv4) or fd00:ec2::23 (IPv6), TCP 80:
https://docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html */}}
{{- define "orderflow.awsIdentityEgress" -}}
{{- if and (not .Values.pipeline.spec.sqs.credentialsSecretRef.name) (eq .Values.awsIdentity "eksPodIdentity") }}
- to:
    - ipBlock: {cidr: 169.254.170.23/32}
    - ipBlock: {cidr: "fd00:ec2::23/128"}
  ports:
    - {port: 80, protocol: TCP}
{{- end }}
{{- end -}}

{{/* orderflow.podSecurityContext: every pod runs as the images' numeric non-root user with
the runtime's default seccomp profile. */}}
{{- define "orderflow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* orderflow.containerSecurityContext: every container: no privilege escalation, no
capabilities, read-only root filesystem, non-root, RuntimeDefault seccomp. */}}
{{- define "orderflow.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* orderflow.probes: startup, liveness and readiness probes on the binaries' health
endpoints (/healthz alive, /readyz ready: 503 without PostgreSQL or while shutting down).
The startup probe allows 60 s (a cold pool, a slow PostgreSQL) before liveness applies. */}}
{{- define "orderflow.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 2
  failureThreshold: 30
  timeoutSeconds: 2
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  failureThreshold: 3
  timeoutSeconds: 2
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
  failureThreshold: 2
  timeoutSeconds: 2
{{- end -}}

{{/* orderflow.lifecycle: a preStop pause (the images have no shell: the kubelet's sleep
action) so Services and the ingress stop routing before SIGTERM. */}}
{{- define "orderflow.lifecycle" -}}
lifecycle:
  preStop:
    sleep:
      seconds: {{ .Values.common.preStopSleepSeconds }}
{{- end -}}

{{/* orderflow.terminationGracePeriod: preStop pause + SHUTDOWN_TIMEOUT + 10 s margin, so the
kubelet never kills a process that is still draining within its own timeout. */}}
{{- define "orderflow.terminationGracePeriod" -}}
{{- add .Values.common.preStopSleepSeconds .Values.common.shutdownTimeoutSeconds 10 -}}
{{- end -}}

{{/* orderflow.scheduling: node selector, affinity, tolerations, priority and topology
spread of a component's pods. (dict "root" $ "component" C "values" COMPONENT_VALUES) */}}
{{- define "orderflow.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml .values.topologySpreadConstraints | nindent 2 }}
{{- else if .root.Values.scheduling.topologySpread }}
topologySpreadConstraints:
  {{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ . }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "orderflow.selectorLabels" $ | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
  {{- end }}
{{- end }}
{{- end -}}

{{/* orderflow.podAnnotations: Prometheus scrape annotations (metrics.podAnnotations)
plus the component's own. (dict "root" $ "port" P "values" COMPONENT_VALUES) */}}
{{- define "orderflow.podAnnotations" -}}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* orderflow.commonEnv: environment every orderflow service container shares. (dict "root" $ "port" P "rustLog" L) */}}
{{- define "orderflow.commonEnv" -}}
- name: HTTP_ADDR
  value: "0.0.0.0:{{ .port }}"
- name: LOG_FORMAT
  value: {{ .root.Values.common.logFormat | quote }}
- name: RUST_LOG
  value: {{ .rustLog | quote }}
- name: SHUTDOWN_TIMEOUT
  value: "{{ .root.Values.common.shutdownTimeoutSeconds }}s"
{{- with .root.Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $.root.Values.otel.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $.root.Values.otel.samplerRatio | quote }}
{{- end }}
{{- range $name, $value := .root.Values.common.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* orderflow.poolerEnv: with pgbouncer.enabled, the services' pools go through the chart's
PgBouncer (same role, password and database as DATABASE_URL, which stays direct for LISTEN).
PgBouncer serves plain TCP inside the namespace (its NetworkPolicy admits only the services),
so that one hop uses `prefer` whatever sslMode the direct connection verifies with. */}}
{{- define "orderflow.poolerEnv" -}}
{{- if .Values.pgbouncer.enabled }}
- name: DATABASE_POOLER
  value: "{{ include "orderflow.componentName" (dict "root" . "component" "pgbouncer") }}:6432"
- name: DATABASE_POOLER_SSLMODE
  value: prefer
{{- end }}
{{- end -}}

{{/* orderflow.extraEnv: a component's own extra variables (name: value map). */}}
{{- define "orderflow.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* orderflow.pipelineEnvFrom: what the controller publishes for the services, plus the SQS
credentials Secret when the pipeline names one. (dict "root" $ "dbSecret" NAME) */}}
{{- define "orderflow.pipelineEnvFrom" -}}
- configMapRef:
    name: {{ include "orderflow.pipelineConfigMap" .root }}
- secretRef:
    name: {{ .dbSecret }}
{{- with .root.Values.pipeline.spec.sqs.credentialsSecretRef.name }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end -}}

{{/* orderflow.clientSecretKeyName / clientSecretKeyKey: the Secret holding CLIENT_SECRET_KEY, and
its key: clientSecretKey.existingSecret (clientSecretKey.secretKey), else the controller's
<pipeline>-client-secret-key (client-secret.key), created once and never changed. */}}
{{- define "orderflow.clientSecretKeyName" -}}
{{- default (printf "%s-client-secret-key" (include "orderflow.pipelineName" .)) .Values.clientSecretKey.existingSecret -}}
{{- end -}}
{{- define "orderflow.clientSecretKeyKey" -}}
{{- if .Values.clientSecretKey.existingSecret }}{{ .Values.clientSecretKey.secretKey }}{{ else }}client-secret.key{{ end -}}
{{- end -}}

{{/* orderflow.clientSecretKeyVolume / Mount / Env: the key of generated client
secrets as a read-only file (CLIENT_SECRET_KEY_FILE), never an environment variable. */}}
{{- define "orderflow.clientSecretKeyVolume" -}}
- name: client-secret-key
  secret:
    secretName: {{ include "orderflow.clientSecretKeyName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "orderflow.clientSecretKeyKey" . }}
        path: client-secret.key
{{- end -}}
{{- define "orderflow.clientSecretKeyMount" -}}
- name: client-secret-key
  mountPath: /etc/orderflow/client-secret-key
  readOnly: true
{{- end -}}
{{- define "orderflow.clientSecretKeyEnv" -}}
- name: CLIENT_SECRET_KEY_FILE
  value: /etc/orderflow/client-secret-key/client-secret.key
{{- end -}}

{{/* orderflow.jwtVolume / jwtMount / jwtEnv: the signing key bundle as a read-only file
(JWT_PRIVATE_KEY_FILE), never an environment variable. */}}
{{- define "orderflow.jwtVolume" -}}
- name: jwt
  secret:
    secretName: {{ include "orderflow.jwtSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "orderflow.jwtSecretKey" . }}
        path: jwt.pem
{{- end -}}
{{- define "orderflow.jwtMount" -}}
- name: jwt
  mountPath: /etc/orderflow/jwt
  readOnly: true
{{- end -}}
{{- define "orderflow.jwtEnv" -}}
- name: JWT_PRIVATE_KEY_FILE
  value: /etc/orderflow/jwt/jwt.pem
{{- end -}}

{{/* orderflow.databaseCAVolume / Mount / Env: the CA bundle that verifies PostgreSQL's certificate
(databaseCA: a Secret or a ConfigMap), mounted read-only at /etc/orderflow/postgres-ca/ca.crt and
named by PGSSLROOTCERT, which sqlx (PgConnectOptions) and libpq read for sslmode verify-ca and
verify-full. Each renders nothing without a bundle. */}}
{{- define "orderflow.databaseCAVolume" -}}
{{- with .Values.databaseCA -}}
{{- if or .secretName .configMapName }}
- name: postgres-ca
  {{- if .secretName }}
  secret:
    secretName: {{ .secretName }}
  {{- else }}
  configMap:
    name: {{ .configMapName }}
  {{- end }}
    defaultMode: 0444
    items:
      - key: {{ .key }}
        path: ca.crt
{{- end }}
{{- end }}
{{- end -}}
{{- define "orderflow.databaseCAMount" -}}
{{- if or .Values.databaseCA.secretName .Values.databaseCA.configMapName }}
- name: postgres-ca
  mountPath: /etc/orderflow/postgres-ca
  readOnly: true
{{- end }}
{{- end -}}
{{- define "orderflow.databaseCAEnv" -}}
{{- if or .Values.databaseCA.secretName .Values.databaseCA.configMapName }}
- name: PGSSLROOTCERT
  value: /etc/orderflow/postgres-ca/ca.crt
{{- end }}
{{- end -}}

{{/* orderflow.checkovSkips: checkov.io/skip annotations shared by every orderflow
Deployment; each names the check and why it does not apply (see docs/KUBERNETES.md). */}}
{{- define "orderflow.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_43=Images are pinned by tag per release; set image.digest to pin by digest
checkov.io/skip2: CKV_K8S_35=The services read DATABASE_URL only from the environment; the Secret comes from the controller
checkov.io/skip3: CKV_K8S_15=IfNotPresent is right for immutable release tags; set image.pullPolicy to Always for mutable ones
{{- end -}}

{{/* orderflow.validate: combinations the schema cannot express, failed with a message that says
what to change. Included once, from order-api.yaml (always rendered). */}}
{{- define "orderflow.validate" -}}
{{- $v := .Values -}}
{{- if and $v.deliveryService.autoscaling.enabled (eq (int $v.deliveryService.autoscaling.minReplicas) 0) -}}
{{- fail "deliveryService.autoscaling.minReplicas is 0, but the delivery-service cannot scale to zero: its pods also run the shipment scheduler and the outbox relay, which must run while the orders queue is empty. Use 1 or more (statusConsumer can scale to zero)." -}}
{{- end -}}
{{- if and (not $v.keda.enabled) $v.statusConsumer.enabled $v.statusConsumer.autoscaling.enabled (eq (int $v.statusConsumer.autoscaling.minReplicas) 0) -}}
{{- fail "statusConsumer.autoscaling.minReplicas is 0 but keda.enabled is false: a CPU HorizontalPodAutoscaler cannot scale from zero. Enable KEDA or use minReplicas 1." -}}
{{- end -}}
{{- if and $v.keda.enabled $v.statusConsumer.enabled $v.statusConsumer.autoscaling.enabled (eq (int $v.statusConsumer.autoscaling.minReplicas) 0) (gt (int $v.keda.fallback.replicas) (int $v.statusConsumer.autoscaling.maxReplicas)) -}}
{{- fail (printf "keda.fallback.replicas (%v) is above statusConsumer.autoscaling.maxReplicas (%v): the fallback of a consumer that scales to zero must fit its bounds." $v.keda.fallback.replicas $v.statusConsumer.autoscaling.maxReplicas) -}}
{{- end -}}
{{- range $name, $c := dict "orderApi" $v.orderApi "statusConsumer" $v.statusConsumer "deliveryService" $v.deliveryService -}}
{{- if and $c.autoscaling.enabled (gt (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%v) is above maxReplicas (%v)." $name $c.autoscaling.minReplicas $c.autoscaling.maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- if and (not $v.pipeline.spec.sqs.endpoint) (eq (include "orderflow.awsAccountId" .) "000000000000") $v.keda.enabled -}}
{{- fail "pipeline.spec.sqs.endpoint is empty (AWS SQS), so keda.awsAccountId must be your AWS account id: KEDA polls https://sqs.<region>.amazonaws.com/<account>/<queue>." -}}
{{- end -}}
{{- include "orderflow.validateKedaIdentity" . -}}
{{- if and (not $v.pipeline.create) (not $v.pipeline.name) -}}
{{- fail "pipeline.create is false: set pipeline.name to the existing OrderPipeline whose ConfigMap and Secrets the services read." -}}
{{- end -}}
{{- if and $v.ingress.enabled (not $v.ingress.host) -}}
{{- fail "ingress.enabled is true: set ingress.host to the host name clients use." -}}
{{- end -}}
{{- if and $v.databaseCA.secretName $v.databaseCA.configMapName -}}
{{- fail "databaseCA names both a Secret and a ConfigMap: set secretName or configMapName, not both." -}}
{{- end -}}
{{- $budget := int $v.common.databaseConnectionBudget -}}
{{- if and (gt $budget 0) $v.pgbouncer.enabled -}}
{{- /* Through PgBouncer the server sees its pools, plus each API replica's direct LISTEN connection. */ -}}
{{- $pooled := mul (int $v.pgbouncer.replicas) 2 (add $v.pgbouncer.poolSize $v.pgbouncer.reservePoolSize) -}}
{{- $api := ternary $v.orderApi.autoscaling.maxReplicas $v.orderApi.replicas $v.orderApi.autoscaling.enabled | int -}}
{{- if gt (add $pooled $api) $budget -}}
{{- fail (printf "PgBouncer could open %d PostgreSQL connections (pgbouncer.replicas %d x 2 databases x (poolSize + reservePoolSize) %d) and the API replicas %d direct LISTEN connections, above common.databaseConnectionBudget %d. Lower pgbouncer.poolSize or replicas, or raise the budget." (int $pooled) (int $v.pgbouncer.replicas) (int (add $v.pgbouncer.poolSize $v.pgbouncer.reservePoolSize)) $api $budget) -}}
{{- end -}}
{{- else if gt $budget 0 -}}
{{- $parts := list -}}
{{- $total := 0 -}}
{{- $deployments := list (list "orderApi" $v.orderApi true) (list "statusConsumer" $v.statusConsumer $v.statusConsumer.enabled) (list "deliveryService" $v.deliveryService true) -}}
{{- range $deployments -}}
{{- $c := index . 1 -}}
{{- if index . 2 -}}
{{- $most := ternary $c.autoscaling.maxReplicas $c.replicas $c.autoscaling.enabled | int -}}
{{- $total = add $total (mul $most $c.databaseMaxConnections) -}}
{{- $parts = append $parts (printf "%s %d x %d" (index . 0) $most (int $c.databaseMaxConnections)) -}}
{{- end -}}
{{- end -}}
{{- if gt (int $total) $budget -}}
{{- fail (printf "the services could open %d PostgreSQL connections (%s; most replicas x databaseMaxConnections), above common.databaseConnectionBudget %d. Lower maxReplicas or databaseMaxConnections, or raise the budget with the server's max_connections." (int $total) (join " + " $parts) $budget) -}}
{{- end -}}
{{- end -}}
{{- $queues := list $v.pipeline.spec.queues.orders.name $v.pipeline.spec.queues.orders.deadLetter.name $v.pipeline.spec.queues.deliveryStatus.name $v.pipeline.spec.queues.deliveryStatus.deadLetter.name -}}
{{- if ne (len $queues) (len (uniq $queues)) -}}
{{- fail (printf "pipeline.spec.queues names the same queue twice (%s): each queue and dead-letter queue needs its own name." (join ", " $queues)) -}}
{{- end -}}
{{- end -}}
