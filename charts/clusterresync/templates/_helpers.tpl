{{/* The chart's name (nameOverride) and the objects' name (<release>-operator by default). */}}
{{- define "clusterresync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "clusterresync.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "clusterresync.serviceAccountName" -}}
{{- default (include "clusterresync.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "clusterresync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clusterresync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "clusterresync.labels" -}}
{{ include "clusterresync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "clusterresync.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
What the operator does inside the namespaces of the resyncs: a ClusterRole in the cluster-wide
mode, a Role in each served namespace otherwise. The same rules as
manifests/rbac-all-namespaces.yaml and manifests/overlays/namespaced/ (tests/unit/test_chart.py
compares them); docs/usage.md explains each verb.
*/}}
{{- define "clusterresync.namespacedRules" -}}
- apiGroups: [clusterresync.io]
  resources: [clusterresyncs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [clusterresync.io]
  resources: [resyncpolicies]
  verbs: [get, list, watch, patch]
- apiGroups: [clusterresync.io]
  resources: [resyncpolicies/status]
  verbs: [patch]
- apiGroups: [clusterresync.io]
  resources: [clusterresyncs/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, delete]
- apiGroups: [""]
  resources: [pods/exec]
  verbs: [get, create]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, watch, create, delete]
- apiGroups: [snapshot.storage.k8s.io]
  resources: [volumesnapshots]
  verbs: [list, watch, create, delete]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, delete]
{{- end -}}

