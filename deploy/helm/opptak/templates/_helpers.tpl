{{/*
Names, labels, the rendered opptak.toml and the secret references shared by
every template.
*/}}

{{- define "opptak.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-opptak, or the release name when it already says opptak. */}}
{{- define "opptak.fullname" -}}
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

{{- define "opptak.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "opptak.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: opptak
{{- end -}}

{{- define "opptak.selectorLabels" -}}
app.kubernetes.io/name: {{ include "opptak.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one role's objects: call with (dict "root" $ "role" "recorder"). */}}
{{- define "opptak.roleLabels" -}}
{{ include "opptak.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "opptak.roleSelectorLabels" -}}
{{ include "opptak.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "opptak.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "opptak.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "opptak.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "opptak.blobsClaim" -}}
{{- .Values.blobs.persistence.existingClaim | default (printf "%s-blobs" (include "opptak.fullname" .)) -}}
{{- end -}}

{{/* The Secret every credential comes from unless its item names another. */}}
{{- define "opptak.secretName" -}}
{{- .Values.secrets.name | default (printf "%s-secrets" (include "opptak.fullname" .)) -}}
{{- end -}}

{{/*
A secretKeyRef for one item of .Values.secrets.refs:
(dict "root" $ "item" "postgresPassword").
*/}}
{{- define "opptak.secretKeyRef" -}}
{{- $ref := index .root.Values.secrets.refs .item -}}
secretKeyRef:
  name: {{ $ref.name | default (include "opptak.secretName" .root) }}
  key: {{ $ref.key }}
{{- end -}}

{{/* Paths inside the containers. */}}
{{- define "opptak.keysDir" -}}/run/opptak/keys{{- end -}}
{{- define "opptak.configDir" -}}/etc/opptak{{- end -}}

{{- define "opptak.usesKeyringFile" -}}
{{- if eq .Values.config.keys.provider "file" }}true{{ end -}}
{{- end -}}

{{/*
Kafka's TLS files and the role's SASL password, mounted read-only from
Secrets (kafka.tls, kafka.sasl): the same paths in every role's pod, so one
opptak.toml names them; each pod mounts its own role's password there.
*/}}
{{- define "opptak.kafkaDir" -}}/run/opptak/kafka{{- end -}}

{{- define "opptak.usesKafkaFiles" -}}
{{- if or .Values.kafka.tls.enabled .Values.kafka.sasl.enabled }}true{{ end -}}
{{- end -}}

{{/* The secrets.refs item of a role's Kafka password: kafkaRecorderPassword. */}}
{{- define "opptak.kafkaPasswordItem" -}}
{{- printf "kafka%sPassword" (title .) -}}
{{- end -}}

{{/* The Secret with a role's client certificate: (dict "root" $ "role" "recorder"). */}}
{{- define "opptak.kafkaCertSecret" -}}
{{- $tls := .root.Values.kafka.tls -}}
{{- index ($tls.roleSecrets | default dict) .role | default $tls.secret -}}
{{- end -}}

{{/* Key files the init container copies into the private keys directory. */}}
{{- define "opptak.needsKeyFiles" -}}
{{- if or (include "opptak.usesKeyringFile" .) .Values.telephonyKeyring.enabled }}true{{ end -}}
{{- end -}}

{{/*
The effective configuration: .Values.config (opptak's own sections and
keys, as in src/default.toml) with the keys the chart decides from its
endpoint, path and port values. values.schema.json refuses those keys in
.Values.config, so each has exactly one place.
*/}}
{{/*
ki.model_hosts: the hosts of speech.url and llm.url, the model servers this
release names (R13: opptak refuses any other non-loopback host).
*/}}
{{- define "opptak.modelHosts" -}}
{{- $hosts := list -}}
{{- range $u := list .Values.speech.url .Values.llm.url -}}
{{- $h := (urlParse $u).hostname | default "" -}}
{{- if $h -}}{{- $hosts = append $hosts $h -}}{{- end -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}

{{- define "opptak.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- $owned := dict
  "bus" (dict "url" (printf "kafka://%s" .Values.kafka.brokers))
  "storage" (dict
    "blobs" (.Values.blobs.url | default (printf "file://%s" .Values.blobs.mountPath))
    "metadata" .Values.postgresql.url
    "archive" .Values.archive.url)
  "ki" (dict "asr_url" .Values.speech.url "llm_url" .Values.llm.url "llm_model" .Values.llm.model "model_hosts" (include "opptak.modelHosts" .))
  "web" (dict "listen" (printf "0.0.0.0:%d" (int .Values.review.port)))
  "telemetry" (dict "listen" (printf "0.0.0.0:%d" (int .Values.telemetry.port)))
-}}
{{- if include "opptak.usesKeyringFile" . -}}
{{- $_ := set $owned "keys" (dict "keyring" (printf "%s/keyring.json" (include "opptak.keysDir" .))) -}}
{{- end -}}
{{- if .Values.telephonyKeyring.enabled -}}
{{- $k := get $owned "keys" | default dict -}}
{{- $_ := set $k "telephony_keyring" (printf "%s/telephony-keyring.json" (include "opptak.keysDir" .)) -}}
{{- $_ := set $owned "keys" $k -}}
{{- end -}}
{{- if .Values.llm.apiKey.enabled -}}
{{- $_ := set (get $owned "ki") "llm_api_key_env" "OPPTAK_LLM_API_KEY" -}}
{{- end -}}
{{- $kafkaDir := include "opptak.kafkaDir" . -}}
{{- if .Values.kafka.tls.enabled -}}
{{- $tls := dict "enabled" true "ca_file" (printf "%s/ca.crt" $kafkaDir) -}}
{{- if .Values.kafka.tls.clientCert -}}
{{- $_ := set $tls "cert_file" (printf "%s/tls.crt" $kafkaDir) -}}
{{- $_ := set $tls "key_file" (printf "%s/tls.key" $kafkaDir) -}}
{{- end -}}
{{- $_ := set (get $owned "bus") "tls" $tls -}}
{{- end -}}
{{- if .Values.kafka.sasl.enabled -}}
{{- /* bus.sasl.username is each role's own: OPPTAK__BUS__SASL__USERNAME in its Deployment. */ -}}
{{- $_ := set (get $owned "bus") "sasl" (dict "mechanism" .Values.kafka.sasl.mechanism "password_file" (printf "%s/sasl-password" $kafkaDir)) -}}
{{- end -}}
{{- if .Values.retentionPolicy -}}
{{- $_ := set $owned "retention" (dict "policy" (printf "%s/policy.toml" (include "opptak.configDir" .))) -}}
{{- end -}}
{{- mustMergeOverwrite $c $owned | toYaml -}}
{{- end -}}

{{/* One TOML value: strings as JSON strings (valid TOML basic strings), whole numbers as integers. */}}
{{- define "opptak.tomlValue" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}
{{- $v | toRawJson -}}
{{- else if kindIs "bool" $v -}}
{{- $v -}}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) -}}
{{- if eq (float64 $v) (floor $v) -}}{{- int64 $v -}}{{- else -}}{{- $v -}}{{- end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) -}}
{{- $v -}}
{{- else if kindIs "slice" $v -}}
[{{- range $i, $e := $v -}}{{- if $i }}, {{ end -}}{{- include "opptak.tomlValue" $e -}}{{- end -}}]
{{- else -}}
{{- fail (printf "opptak.toml: cannot write a %s value (%v)" (kindOf $v) $v) -}}
{{- end -}}
{{- end -}}

{{/*
opptak.toml from the effective configuration: one table per section, its
sub-tables ([bus.tls], [bus.sasl]) after its own keys.
*/}}
{{- define "opptak.toml" -}}
{{- $cfg := include "opptak.config" . | fromYaml -}}
# Rendered by the opptak Helm chart from .Values.config and the endpoint
# values; OPPTAK__SECTION__KEY environment variables override single keys.
{{- range $section := keys $cfg | sortAlpha }}
{{- $table := get $cfg $section }}
{{- if $table }}

[{{ $section }}]
{{- range $key := keys $table | sortAlpha }}
{{- $v := get $table $key }}
{{- if not (kindIs "map" $v) }}
{{ $key }} = {{ include "opptak.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $key := keys $table | sortAlpha }}
{{- $sub := get $table $key }}
{{- if kindIs "map" $sub }}

[{{ $section }}.{{ $key }}]
{{- range $k := keys $sub | sortAlpha }}
{{ $k }} = {{ include "opptak.tomlValue" (get $sub $k) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Combinations the schema cannot express; configmap.yaml includes this so
`helm template` / `helm install` stop with the reason.
*/}}
{{- define "opptak.validate" -}}
{{- if and .Values.roles.transcriber.enabled (not .Values.speech.url) -}}
{{- fail "roles.transcriber.enabled needs speech.url (the speech recognizer); disable the role or name the server" -}}
{{- end -}}
{{- if and (eq .Values.config.keys.provider "pkcs11") (not .Values.config.keys.pkcs11_module) -}}
{{- fail "config.keys.provider = pkcs11 needs config.keys.pkcs11_module (the HSM vendor's library, mounted with extraVolumes)" -}}
{{- end -}}
{{- if and .Values.llm.apiKey.enabled (eq .Values.llm.url "embedded://") -}}
{{- fail "llm.apiKey.enabled with llm.url = embedded://: the embedded summarizer takes no key" -}}
{{- end -}}
{{- $tls := .Values.kafka.tls -}}
{{- if and (not $tls.enabled) (or $tls.clientCert $tls.roleSecrets) -}}
{{- fail "kafka.tls.clientCert and kafka.tls.roleSecrets need kafka.tls.enabled" -}}
{{- end -}}
{{- if and $tls.enabled (not $tls.secret) -}}
{{- fail "kafka.tls.enabled needs kafka.tls.secret: a Secret holding ca.crt, the CA the brokers' certificates chain to (and tls.crt, tls.key with kafka.tls.clientCert)" -}}
{{- end -}}
{{- if and $tls.roleSecrets (not $tls.clientCert) -}}
{{- fail "kafka.tls.roleSecrets name the roles' client certificates: set kafka.tls.clientCert too" -}}
{{- end -}}
{{- if and .Values.kafka.sasl.enabled (not $tls.enabled) -}}
{{- fail "kafka.sasl.enabled needs kafka.tls.enabled: without TLS every record, call audio too, crosses the network in clear (the chart never sets bus.sasl.allow_plaintext)" -}}
{{- end -}}
{{- if .Values.kafka.sasl.enabled -}}
{{- $seen := dict -}}
{{- range $role := list "recorder" "transcriber" "summarizer" "sweeper" "review" -}}
{{- if (index $.Values.roles $role).enabled -}}
{{- $user := index $.Values.kafka.sasl.usernames $role -}}
{{- if hasKey $seen $user -}}
{{- fail (printf "kafka.sasl.usernames: %s and %s are both %q: each role is its own principal with its own ACLs (docs/security.md)" (get $seen $user) $role $user) -}}
{{- end -}}
{{- $_ := set $seen $user $role -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $partitions := int (.Values.config.bus.partitions | default 12) -}}
{{- range $role := list "recorder" "transcriber" "summarizer" -}}
{{- $r := index $.Values.roles $role -}}
{{- if and $r.enabled (gt (int $r.replicas) $partitions) -}}
{{- fail (printf "roles.%s.replicas = %d exceeds config.bus.partitions = %d: a consumer group gives each partition to one member, the rest would idle" $role (int $r.replicas) $partitions) -}}
{{- end -}}
{{- end -}}
{{- end -}}
