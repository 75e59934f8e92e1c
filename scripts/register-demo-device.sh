#!/usr/bin/env bash
# Registers a demo device directly in Redis (token hash + assigned playlist) and prints its id
# and token as shell assignments. Uses the key schema of Sources/Shared/Keys/KeySchema.swift:
# bucket = FNV-1a 32 of the lower-case id, mod BUCKETS.
set -euo pipefail
REDIS_PORT=${REDIS_PORT:-6390}
BUCKETS=${BUCKETS:-16}
id=${1:-$(cat /proc/sys/kernel/random/uuid)}
id=${id,,}
token=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
h=2166136261
for ((i = 0; i < ${#id}; i++)); do
    printf -v c '%d' "'${id:i:1}"
    h=$(( ((h ^ c) * 16777619) & 0xFFFFFFFF ))
done
bucket=$((h % BUCKETS))
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" HSET "hb:{$bucket}:dev:$id" token "$hash" playlist "demo-playlist" >/dev/null
echo "DEMO_DEVICE_ID=$id"
echo "DEMO_DEVICE_TOKEN=$token"
