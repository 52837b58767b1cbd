{{/* The app.kubernetes.io/name label: the chart's name unless nameOverride says otherwise. */}}
{{- define "modelship.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object's name: the release name (so two installs never clash and the
default release `modelship` gives the names the operator's defaults expect), or
fullnameOverride. Truncated so that "<fullname>-<component>-<suffix>" stays a valid name. */}}
{{- define "modelship.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object, so `kubectl get all -l app.kubernetes.io/instance=<release>` finds
them; commonLabels last so users can add theirs (never change the selector labels). */}}
{{- define "modelship.labels" -}}
app.kubernetes.io/name: {{ include "modelship.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelship
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component's objects: the common labels plus the component. Called with
(list $ "component"). */}}
{{- define "modelship.componentLabels" -}}
{{- $root := index . 0 -}}
{{ include "modelship.labels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Selector of one component's pods: stable across upgrades (a Deployment's and a
StatefulSet's selector is immutable), so no version and no commonLabels. Called with
(list $ "component"). */}}
{{- define "modelship.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "modelship.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* The operator pods' selector (the Service, the ServiceMonitor and the NetworkPolicies use it). */}}
{{- define "modelship.operator.selector" -}}
{{ include "modelship.selectorLabels" (list . "operator") }}
{{- end -}}

{{/* A pod's or container's securityContext: the chart-wide restricted default with the
component's own keys merged over it. Called with (list $global $component). */}}
{{- define "modelship.securityContext" -}}
{{- $merged := mergeOverwrite (deepCopy (index . 0)) (deepCopy (index . 1)) -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* imagePullSecrets of every pod of the chart. */}}
{{- define "modelship.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* A secret value generated once and kept: the live Secret's value when the release already
has one (`lookup` sees it on upgrade), a new random one otherwise. Never from values.
Called with (list $ secretName key). Returns base64, ready for a Secret's data. */}}
{{- define "modelship.keptSecretValue" -}}
{{- $root := index . 0 -}}
{{- $live := lookup "v1" "Secret" $root.Release.Namespace (index . 1) -}}
{{- if and $live $live.data (hasKey $live.data (index . 2)) -}}
{{- index $live.data (index . 2) -}}
{{- else -}}
{{- randAlphaNum 40 | b64enc -}}
{{- end -}}
{{- end -}}

{{/* Exactly what the operator does with the API, in one place for the ClusterRole and the Roles. */}}
{{- define "modelship.operator.rules" -}}
- apiGroups: [modelship.io]
  resources: [modeldeployments]
  verbs: [get, list, watch]
- apiGroups: [modelship.io]
  resources: [modeldeployments/status]
  verbs: [get, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* Name of the operator's objects (Deployment, ServiceAccount, Service, RBAC). */}}
{{- define "modelship.operator.fullname" -}}
{{- printf "%s-operator" (include "modelship.fullname" .) -}}
{{- end -}}

{{/* The Secret holding the Alertmanager webhook's bearer token (key `token`): the user's, or
the one the chart generates. The AlertmanagerConfig references the same name. */}}
{{- define "modelship.operator.webhookSecretName" -}}
{{- default (printf "%s-webhook-token" (include "modelship.fullname" .)) .Values.operator.webhook.existingSecret -}}
{{- end -}}

{{/* Name of MLflow's Deployment, Service and artifact PVC. */}}
{{- define "modelship.mlflow.fullname" -}}
{{- printf "%s-mlflow" (include "modelship.fullname" .) -}}
{{- end -}}

{{/* The tracking URI every pod uses: the in-chart MLflow Service (namespace-qualified, since
training and serving pods run in other namespaces) or the external one from values. */}}
{{- define "modelship.mlflow.trackingUri" -}}
{{- if .Values.mlflow.trackingUri -}}
{{- .Values.mlflow.trackingUri -}}
{{- else if .Values.mlflow.enabled -}}
{{- printf "http://%s.%s.svc:%d" (include "modelship.mlflow.fullname" .) .Release.Namespace (int .Values.mlflow.service.port) -}}
{{- else -}}
{{- fail "mlflow.trackingUri: required when mlflow.enabled is false (the URL of your MLflow tracking server)" -}}
{{- end -}}
{{- end -}}

{{/* Where MLflow stores artifacts: the S3-compatible bucket when one is configured, else the
PVC mounted at /mlflow/artifacts (served by the MLflow server itself). */}}
{{- define "modelship.mlflow.artifactsDestination" -}}
{{- with .Values.mlflow.artifacts.s3.bucket -}}
{{- printf "s3://%s" (trimSuffix "/" (printf "%s/%s" . ($.Values.mlflow.artifacts.s3.prefix | trimAll "/"))) -}}
{{- else -}}
/mlflow/artifacts
{{- end -}}
{{- end -}}

{{/* Name of PostgreSQL's StatefulSet and Service. */}}
{{- define "modelship.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "modelship.fullname" .) -}}
{{- end -}}

{{/* The Secret holding PostgreSQL's password (key `password`): the user's, or the one the chart
generates and keeps across upgrades. */}}
{{- define "modelship.postgresql.secretName" -}}
{{- default (printf "%s-postgresql" (include "modelship.fullname" .)) .Values.postgresql.auth.existingSecret -}}
{{- end -}}

{{/* The Gateway (namespace/name) the operator's HTTPRoutes attach to: the chart's own when
gateway.enabled, else gateway.ref. */}}
{{- define "modelship.gateway.ref" -}}
{{- if .Values.gateway.enabled -}}
{{- printf "%s/%s" .Release.Namespace (include "modelship.gateway.name" .) -}}
{{- else -}}
{{- .Values.gateway.ref -}}
{{- end -}}
{{- end -}}

{{/* Name of the chart's Gateway. */}}
{{- define "modelship.gateway.name" -}}
{{- printf "%s-gateway" (include "modelship.fullname" .) -}}
{{- end -}}

{{/* Base URL clients reach model endpoints at: gateway.endpointBaseUrl when set, else derived
from the chart's Gateway listener (scheme from its protocol, host from its hostname, the port
unless it is the scheme's default), else http://localhost:8000 (a port-forward, or the host
port hack/kind/up.sh maps to the gateway). */}}
{{- define "modelship.gateway.endpointBaseUrl" -}}
{{- $gw := .Values.gateway -}}
{{- if $gw.endpointBaseUrl -}}
{{- $gw.endpointBaseUrl | trimSuffix "/" -}}
{{- else if and $gw.enabled $gw.hostname -}}
{{- $scheme := ternary "https" "http" (eq $gw.listener.protocol "HTTPS") -}}
{{- $default := ternary 443 80 (eq $scheme "https") -}}
{{- if eq (int $gw.listener.port) $default -}}
{{- printf "%s://%s" $scheme $gw.hostname -}}
{{- else -}}
{{- printf "%s://%s:%d" $scheme $gw.hostname (int $gw.listener.port) -}}
{{- end -}}
{{- else -}}
http://localhost:8000
{{- end -}}
{{- end -}}

{{/* A peer given by namespace and pod labels (both must match). Called with a values dict
holding namespaceSelector and podSelector. */}}
{{- define "modelship.networkPolicy.peer" -}}
- namespaceSelector:
    {{- toYaml (.namespaceSelector | default dict) | nindent 4 }}
  podSelector:
    {{- toYaml (.podSelector | default dict) | nindent 4 }}
{{- end -}}
