{{/* Names, labels and the pod template shared by the Deployment and the
StatefulSet (file store). */}}

{{- define "edr-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "edr-worker.fullname" -}}
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

{{- define "edr-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "edr-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edr-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "edr-worker.labels" -}}
helm.sh/chart: {{ include "edr-worker.chart" . }}
{{ include "edr-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: edr-worker
{{- end }}

{{- define "edr-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "edr-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "edr-worker.secretName" -}}
{{- default (include "edr-worker.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "edr-worker.validate" -}}
{{- if not (has .Values.store.mode (list "memory" "file" "postgres")) }}
{{- fail (printf "store.mode must be memory, file or postgres, not %q" .Values.store.mode) }}
{{- end }}
{{- if and (eq .Values.store.mode "postgres") (not .Values.existingSecret) (not .Values.store.postgres.dsn) }}
{{- fail "store.mode=postgres needs store.postgres.dsn or existingSecret" }}
{{- end }}
{{- if and .Values.callbacks.enabled (not .Values.existingSecret) (not .Values.callbacks.authCode) }}
{{- fail "callbacks.enabled needs callbacks.authCode or existingSecret" }}
{{- end }}
{{- end }}

{{- define "edr-worker.podTemplate" -}}
metadata:
  labels:
    {{- include "edr-worker.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if and .Values.secret.create (not .Values.existingSecret) }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "edr-worker.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: edr-worker
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- with .Values.kafka.properties }}
      args:
        {{- range $k, $v := . }}
        - "-X"
        - {{ printf "%s=%v" $k $v | quote }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      env:
        - name: EDR_KAFKA_BROKERS
          value: {{ .Values.kafka.brokers | quote }}
        - name: EDR_TOPIC
          value: {{ .Values.kafka.topic | quote }}
        - name: EDR_DLQ_TOPIC
          value: {{ .Values.kafka.dlqTopic | quote }}
        - name: EDR_GROUP_ID
          value: {{ .Values.kafka.groupId | quote }}
        {{- with .Values.kafka.changelogTopic }}
        - name: EDR_CHANGELOG_TOPIC
          value: {{ . | quote }}
        {{- end }}
        - name: EDR_STORE
          value: {{ .Values.store.mode | quote }}
        {{- if .Values.store.acceptGap }}
        - name: EDR_ACCEPT_GAP
          value: "1"
        {{- end }}
        {{- if eq .Values.store.mode "file" }}
        - name: EDR_FILE_PATH
          value: /var/lib/edr-worker/data/edr-store.json
        {{- end }}
        {{- if eq .Values.store.mode "postgres" }}
        - name: EDR_PG_DSN
          valueFrom:
            secretKeyRef:
              name: {{ include "edr-worker.secretName" . }}
              key: pg-dsn
        - name: EDR_PG_TABLE
          value: {{ .Values.store.postgres.table | quote }}
        {{- end }}
        - name: EDR_REDIS_URL
          valueFrom:
            secretKeyRef:
              name: {{ include "edr-worker.secretName" . }}
              key: redis-url
        - name: EDR_RPC_PREFIX
          value: {{ .Values.rpc.prefix | quote }}
        - name: EDR_RPC_THREADS
          value: {{ .Values.rpc.threads | quote }}
        - name: EDR_WORKER_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: EDR_LOG_LEVEL
          value: {{ .Values.logLevel | quote }}
        - name: EDR_LOG_FORMAT
          value: {{ .Values.logFormat | quote }}
        - name: EDR_HTTP_ADDR
          value: {{ printf "0.0.0.0:%v" .Values.httpPort | quote }}
        - name: EDR_READY_MAX_LAG
          value: {{ .Values.readyMaxLag | quote }}
        {{- if .Values.callbacks.enabled }}
        - name: EDR_CALLBACK_AUTH_KEY
          value: {{ .Values.callbacks.authKey | quote }}
        - name: EDR_CALLBACK_AUTH_CODE
          valueFrom:
            secretKeyRef:
              name: {{ include "edr-worker.secretName" . }}
              key: callback-auth-code
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.httpPort }}
          protocol: TCP
      {{- if .Values.livenessProbe.enabled }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        initialDelaySeconds: {{ .Values.livenessProbe.initialDelaySeconds }}
        periodSeconds: {{ .Values.livenessProbe.periodSeconds }}
        timeoutSeconds: {{ .Values.livenessProbe.timeoutSeconds }}
        failureThreshold: {{ .Values.livenessProbe.failureThreshold }}
      {{- end }}
      {{- if .Values.readinessProbe.enabled }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        initialDelaySeconds: {{ .Values.readinessProbe.initialDelaySeconds }}
        periodSeconds: {{ .Values.readinessProbe.periodSeconds }}
        timeoutSeconds: {{ .Values.readinessProbe.timeoutSeconds }}
        failureThreshold: {{ .Values.readinessProbe.failureThreshold }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if eq .Values.store.mode "file" }}
        - name: data
          mountPath: /var/lib/edr-worker/data
        {{- end }}
  volumes:
    - name: tmp
      emptyDir: {}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
