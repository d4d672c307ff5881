{{/*
Names, labels and the checks every template relies on.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "apns-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: fullnameOverride, else "<release>-<chart>", else the
release alone when it already holds the chart name. Kubernetes caps names at 63.
*/}}
{{- define "apns-connector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "apns-connector.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "name-version", the value of the helm.sh/chart label. */}}
{{- define "apns-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that pick the connector's pods; they never change after install. */}}
{{- define "apns-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apns-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The labels of every object of the release. */}}
{{- define "apns-connector.labels" -}}
helm.sh/chart: {{ include "apns-connector.chart" . }}
{{ include "apns-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ include "apns-connector.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/component: connector
app.kubernetes.io/part-of: apns-connector
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "apns-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "apns-connector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "apns-connector.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest pins the image. */}}
{{- define "apns-connector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "apns-connector.imageTag" .) }}
{{- end }}
{{- end }}

{{/* Where the ConfigMap puts connector.toml; the image's CMD reads the same path. */}}
{{- define "apns-connector.configDir" -}}
/etc/apns-connector
{{- end }}

{{/* Each credentials Secret is mounted at <credentialsDir>/<secret name>. */}}
{{- define "apns-connector.credentialsDir" -}}
/var/run/secrets/apns-connector
{{- end }}

{{/* The Secret an app's files come from: its own, else credentials.existingSecret. */}}
{{- define "apns-connector.appSecret" -}}
{{- $app := index . 0 }}
{{- $root := index . 1 }}
{{- $secret := default $root.Values.credentials.existingSecret $app.existingSecret }}
{{- if not $secret }}
{{- fail (printf "apps: %s names no Secret for its files; set credentials.existingSecret, or existingSecret on the app, to an existing Secret" $app.bundleId) }}
{{- end }}
{{- $secret }}
{{- end }}

{{/* The file keys an app reads from its Secret, in a fixed order. */}}
{{- define "apns-connector.appFileKeys" -}}
{{- $keys := list }}
{{- range $field := list "keyFile" "certificateFile" "certificateKeyFile" "certificatePasswordFile" "caFile" }}
{{- with get $ $field }}
{{- $keys = append $keys . }}
{{- end }}
{{- end }}
{{- toJson $keys }}
{{- end }}

{{/*
The Secrets to mount, as JSON: a list of {"name": secret, "keys": [file keys]}, in the
order the apps first name them. Only the keys the apps use are projected, so a Secret
that lacks one keeps the pod from starting, with the missing key in its events.
*/}}
{{- define "apns-connector.secretMounts" -}}
{{- $order := list }}
{{- $keys := dict }}
{{- range $app := .Values.apps }}
{{- $secret := include "apns-connector.appSecret" (list $app $) }}
{{- if not (hasKey $keys $secret) }}
{{- $order = append $order $secret }}
{{- $_ := set $keys $secret (list) }}
{{- end }}
{{- $merged := concat (get $keys $secret) (include "apns-connector.appFileKeys" $app | fromJsonArray) }}
{{- $_ := set $keys $secret (uniq $merged) }}
{{- end }}
{{- $mounts := list }}
{{- range $secret := $order }}
{{- $mounts = append $mounts (dict "name" $secret "keys" (get $keys $secret)) }}
{{- end }}
{{- toJson $mounts }}
{{- end }}

{{/* The path of one of an app's files: (list app fieldName root). */}}
{{- define "apns-connector.appFilePath" -}}
{{- $app := index . 0 }}
{{- $field := index . 1 }}
{{- $root := index . 2 }}
{{- printf "%s/%s/%s" (include "apns-connector.credentialsDir" $root) (include "apns-connector.appSecret" (list $app $root)) (get $app $field) }}
{{- end }}

{{/*
The pod's grace period: the connector's drain deadline rounded up, plus a margin to
commit offsets, flush the producer and exit. An explicit value must be longer than the
drain deadline, or the kubelet would kill the connector in the middle of its drain.
*/}}
{{- define "apns-connector.terminationGracePeriodSeconds" -}}
{{- $drain := int (ceil .Values.delivery.drainTimeoutSeconds) }}
{{- $explicit := int .Values.terminationGracePeriodSeconds }}
{{- if gt $explicit 0 }}
{{- if le $explicit $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than delivery.drainTimeoutSeconds (%v), or the pod is killed before it has drained; set it to 0 to get drainTimeoutSeconds + drainMarginSeconds" $explicit .Values.delivery.drainTimeoutSeconds) }}
{{- end }}
{{- $explicit }}
{{- else }}
{{- add $drain .Values.drainMarginSeconds }}
{{- end }}
{{- end }}

{{/*
Checks across values that the schema cannot express. Each stops the rendering with a
message naming the values and the fix.
*/}}
{{- define "apns-connector.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are both true: two autoscalers would fight over the Deployment's replicas; enable only one (keda scales on consumer lag, autoscaling on CPU)" }}
{{- end }}
{{- $partitions := int .Values.kafka.requestsTopicPartitions }}
{{- range $name := list "autoscaling" "keda" }}
{{- $scaler := get $.Values $name }}
{{- if $scaler.enabled }}
{{- if eq $partitions 0 }}
{{- fail (printf "%s.enabled is true but kafka.requestsTopicPartitions is 0; set it to the partition count of %s, which caps %s.maxReplicas" $name $.Values.kafka.requestsTopic $name) }}
{{- end }}
{{- if gt (int $scaler.maxReplicas) $partitions }}
{{- fail (printf "%s.maxReplicas (%d) is larger than kafka.requestsTopicPartitions (%d): pods beyond the partition count of %s get no partition and sit idle; lower %s.maxReplicas or add partitions" $name (int $scaler.maxReplicas) $partitions $.Values.kafka.requestsTopic $name) }}
{{- end }}
{{- if gt (int $scaler.minReplicas) (int $scaler.maxReplicas) }}
{{- fail (printf "%s.minReplicas (%d) is larger than %s.maxReplicas (%d)" $name (int $scaler.minReplicas) $name (int $scaler.maxReplicas)) }}
{{- end }}
{{- end }}
{{- end }}
{{- $bundleIds := dict }}
{{- range $app := .Values.apps }}
{{- if hasKey $bundleIds $app.bundleId }}
{{- fail (printf "apps: bundleId %s appears twice; each app is configured once" $app.bundleId) }}
{{- end }}
{{- $_ := set $bundleIds $app.bundleId true }}
{{- end }}
{{- end }}
