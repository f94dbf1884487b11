{{/* The chart's name, or nameOverride. */}}
{{- define "odock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's resource name: fullnameOverride, or release-chart (once when they agree). */}}
{{- define "odock.fullname" -}}
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

{{- define "odock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "odock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "odock.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "odock.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "odock.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "odock.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "odock.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The secret settings the chart stores (empty values left out), as a name → value dict. */}}
{{- define "odock.secretValues" -}}
{{- $s := .Values.secrets -}}
{{- $values := dict -}}
{{- if $s.databaseUrl }}{{ $_ := set $values "ODOCK_DATABASE_URL" $s.databaseUrl }}{{ end -}}
{{- if $s.redisUrl }}{{ $_ := set $values "ODOCK_REDIS_URL" $s.redisUrl }}{{ end -}}
{{- if $s.providerKeyEncryption.keyId }}{{ $_ := set $values "ODOCK_PROVIDER_KEY_ENCRYPTION_KEY_ID" $s.providerKeyEncryption.keyId }}{{ end -}}
{{- if $s.providerKeyEncryption.privateKey }}{{ $_ := set $values "ODOCK_PROVIDER_KEY_ENCRYPTION_PRIVATE_KEY" $s.providerKeyEncryption.privateKey }}{{ end -}}
{{- if $s.bootstrapAdmin.email }}{{ $_ := set $values "ODOCK_BOOTSTRAP_ADMIN_EMAIL" $s.bootstrapAdmin.email }}{{ end -}}
{{- if $s.bootstrapAdmin.password }}{{ $_ := set $values "ODOCK_BOOTSTRAP_ADMIN_PASSWORD" $s.bootstrapAdmin.password }}{{ end -}}
{{- if $s.cacheInvalidationSecret }}{{ $_ := set $values "ODOCK_CACHE_INVALIDATION_SECRET" $s.cacheInvalidationSecret }}{{ end -}}
{{- range $name, $value := $s.extra }}{{ if $value }}{{ $_ := set $values $name (toString $value) }}{{ end }}{{ end -}}
{{- toYaml $values -}}
{{- end -}}

{{/* The Secret the pods read: the existing one, the chart's, or none (empty). */}}
{{- define "odock.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else if fromYaml (include "odock.secretValues" .) -}}
{{- include "odock.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* Refuse values that cannot work, with a message saying what to change. */}}
{{- define "odock.validate" -}}
{{- if not (has .Values.mode (list "embedded" "production")) -}}
{{- fail (printf "mode must be embedded or production, not %q" .Values.mode) -}}
{{- end -}}
{{- if eq .Values.mode "embedded" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled -}}
{{- fail "mode embedded runs exactly one pod (SQLite and in-process state): set replicaCount 1 and autoscaling.enabled false, or use mode production with PostgreSQL and Redis" -}}
{{- end -}}
{{- else -}}
{{- if .Values.persistence.enabled -}}
{{- fail "persistence is for mode embedded; production pods keep only their usage journal, in dataDir (an emptyDir)" -}}
{{- end -}}
{{- if not .Values.secrets.existingSecret -}}
{{- $s := .Values.secrets -}}
{{- if not (and $s.databaseUrl $s.redisUrl $s.providerKeyEncryption.keyId $s.providerKeyEncryption.privateKey) -}}
{{- fail "mode production needs secrets.databaseUrl, secrets.redisUrl and secrets.providerKeyEncryption (keyId and privateKey), or secrets.existingSecret naming a Secret that holds them" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The pods' security settings and temporary volume, shared by the Deployment and the Job. */}}
{{- define "odock.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
