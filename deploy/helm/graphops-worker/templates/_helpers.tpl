{{/* Names and labels. */}}
{{- define "graphops-worker.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "graphops-worker.serviceAccountName" -}}
{{- default (include "graphops-worker.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Selector labels: stable across upgrades. app.kubernetes.io/name is also
the job label of the scrape (ServiceMonitor jobLabel), which the alerts, the
dashboard and the autoscaler select on: job="graphops-worker". */}}
{{- define "graphops-worker.selectorLabels" -}}
app.kubernetes.io/name: graphops-worker
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "graphops-worker.labels" -}}
{{ include "graphops-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: graphops
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The image, by digest or by tag, never a floating latest. */}}
{{- define "graphops-worker.image" -}}
{{- $repo := required "image.repository is required: the registry path of the image built from the Dockerfile" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if eq $tag "latest" -}}{{- fail "image.tag must not be latest: pin a version or set image.digest" -}}{{- end -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/* Seconds of a duration written as <n>s or <n>m (the schema allows no
other form for shutdownGrace). */}}
{{- define "graphops-worker.seconds" -}}
{{- if hasSuffix "m" . -}}{{- mul (trimSuffix "m" . | int) 60 -}}{{- else -}}{{- trimSuffix "s" . | int -}}{{- end -}}
{{- end -}}

{{/* GOMEMLIMIT: 90 % of the memory limit (Mi or Gi), in MiB. */}}
{{- define "graphops-worker.gomemlimit" -}}
{{- $l := . -}}
{{- $mib := 0 -}}
{{- if hasSuffix "Gi" $l -}}{{- $mib = mul (trimSuffix "Gi" $l | int) 1024 -}}{{- else -}}{{- $mib = trimSuffix "Mi" $l | int -}}{{- end -}}
{{- printf "%dMiB" (div (mul $mib 9) 10) -}}
{{- end -}}

{{/* The job selector every query uses; namespace-scoped so that two
installs sharing a Prometheus do not mix. */}}
{{- define "graphops-worker.querySelector" -}}
job="graphops-worker", namespace="{{ .Release.Namespace }}"
{{- end -}}
