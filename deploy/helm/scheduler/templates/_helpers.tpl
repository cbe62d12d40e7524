{{/* Names: the chart name, and the full name of every object. */}}
{{- define "scheduler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scheduler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The headless Service that names the StatefulSet's pods. */}}
{{- define "scheduler.headless" -}}
{{- printf "%s-headless" (include "scheduler.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "scheduler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scheduler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scheduler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scheduler.labels" -}}
helm.sh/chart: {{ include "scheduler.chart" . }}
{{ include "scheduler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "scheduler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scheduler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Where the Secrets are mounted, read-only. Each flag that names a file
points into one of these.
*/}}
{{- define "scheduler.mount.ca" -}}/etc/scheduler/kafka-ca{{- end }}
{{- define "scheduler.mount.cert" -}}/etc/scheduler/kafka-cert{{- end }}
{{- define "scheduler.mount.sasl" -}}/etc/scheduler/sasl{{- end }}
{{- define "scheduler.mount.web" -}}/etc/scheduler/web{{- end }}

{{/*
scheduler.flags renders the `scheduler run` flags as a YAML map of flag
name to value (a string each): the first-class values, then `config`,
which wins. Values Helm read as floats (every YAML number) are printed as
integers when they are whole, so 1000000 stays 1000000 and not 1e+06.
*/}}
{{- define "scheduler.flags" -}}
{{- $v := .Values -}}
{{- $f := dict -}}
{{- if not $v.kafka.brokers }}
{{- fail "kafka.brokers is required: the embedded broker of `scheduler run` is not for Kubernetes" }}
{{- end }}
{{- $_ := set $f "brokers" (join "," $v.kafka.brokers) -}}
{{- if $v.kafka.tls.enabled }}
{{- $_ := set $f "tls" "true" -}}
{{- with $v.kafka.tls.serverName }}{{ $_ := set $f "tls-server-name" . }}{{ end -}}
{{- if $v.kafka.tls.ca.secretName }}
{{- $_ := set $f "tls-ca" (printf "%s/%s" (include "scheduler.mount.ca" .) $v.kafka.tls.ca.key) -}}
{{- end }}
{{- if $v.kafka.tls.clientCert.secretName }}
{{- $_ := set $f "tls-cert" (printf "%s/%s" (include "scheduler.mount.cert" .) $v.kafka.tls.clientCert.certKey) -}}
{{- $_ := set $f "tls-key" (printf "%s/%s" (include "scheduler.mount.cert" .) $v.kafka.tls.clientCert.keyKey) -}}
{{- end }}
{{- else if or $v.kafka.tls.ca.secretName $v.kafka.tls.clientCert.secretName $v.kafka.tls.serverName }}
{{- fail "kafka.tls.ca, kafka.tls.clientCert and kafka.tls.serverName need kafka.tls.enabled" }}
{{- end }}
{{- with $v.kafka.sasl.mechanism }}
{{- $_ := set $f "sasl-mechanism" . -}}
{{- if not $v.kafka.sasl.user }}{{ fail "kafka.sasl.mechanism needs kafka.sasl.user" }}{{ end -}}
{{- if not $v.kafka.sasl.passwordSecret.name }}{{ fail "kafka.sasl.mechanism needs kafka.sasl.passwordSecret.name" }}{{ end -}}
{{- $_ := set $f "sasl-user" $v.kafka.sasl.user -}}
{{- $_ := set $f "sasl-password-file" (printf "%s/%s" (include "scheduler.mount.sasl" $) $v.kafka.sasl.passwordSecret.key) -}}
{{- end }}
{{- $s := $v.scheduler -}}
{{- with $s.topics }}{{ $_ := set $f "topic" (join "," .) }}{{ end -}}
{{- with $s.group }}{{ $_ := set $f "group" . }}{{ end -}}
{{- with $s.allowTarget }}{{ $_ := set $f "allow-target" (join "," .) }}{{ end -}}
{{- if not (kindIs "invalid" $s.createTopics) }}{{ $_ := set $f "create-topics" $s.createTopics }}{{ end -}}
{{- if not (kindIs "invalid" $s.partitions) }}{{ $_ := set $f "partitions" $s.partitions }}{{ end -}}
{{- if not (kindIs "invalid" $s.replicationFactor) }}{{ $_ := set $f "replication-factor" $s.replicationFactor }}{{ end -}}
{{- with $s.sessionTimeout }}{{ $_ := set $f "session-timeout" . }}{{ end -}}
{{- with $s.flushTimeout }}{{ $_ := set $f "flush-timeout" . }}{{ end -}}
{{- with $s.logLevel }}{{ $_ := set $f "log-level" . }}{{ end -}}
{{- with $s.logFormat }}{{ $_ := set $f "log-format" . }}{{ end -}}
{{- $_ := set $f "http-addr" (printf ":%d" (int $v.http.port)) -}}
{{- with $v.webConfig.existingSecret }}
{{- $_ := set $f "web-config-file" (printf "%s/%s" (include "scheduler.mount.web" $) $v.webConfig.key) -}}
{{- end }}
{{- range $name, $value := $v.config }}
{{- if hasPrefix "-" $name }}
{{- fail (printf "config: %q: name a flag without dashes" $name) }}
{{- end }}
{{- if has $name (list "instance-id" "http-addr" "sasl-password" "embedded-addr" "data-dir" "check") }}
{{- fail (printf "config: %s is set by the chart (see values.yaml: config)" $name) }}
{{- end }}
{{- $_ := set $f $name $value -}}
{{- end }}
{{- range $name, $value := $f }}
{{ $name }}: {{ if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) }}{{ int64 $value | toString | quote }}{{ else if kindIs "slice" $value }}{{ join "," $value | quote }}{{ else }}{{ toString $value | quote }}{{ end }}
{{- end }}
{{- end }}
