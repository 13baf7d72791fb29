{{/* The objects' name: the release name, or "ecs-power-controller" inside it. */}}
{{- define "epc.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "epc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What selects the controller's pods. */}}
{{- define "epc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "epc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* On every object (deploy/base's part-of label included). */}}
{{- define "epc.labels" -}}
{{ include "epc.selectorLabels" . }}
app.kubernetes.io/part-of: ecs-power-controller
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The Secret holding the controller's own AccessKey, if any. */}}
{{- define "epc.credentialsSecret" -}}
{{- if .Values.credentials.secret.existingSecret -}}
{{- .Values.credentials.secret.existingSecret -}}
{{- else if .Values.credentials.secret.accessKeyId -}}
{{- printf "%s-credentials" (include "epc.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The controller's own grants are namespaced when it watches one namespace. */}}
{{- define "epc.roleKind" -}}
{{- if .Values.controller.watchNamespace -}}Role{{- else -}}ClusterRole{{- end -}}
{{- end -}}
