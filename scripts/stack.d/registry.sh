# registry.sh — Apicurio Registry for scripts/stack (sourced, not run).
#
# Maven Central carries Apicurio Registry 3.0.9 as a packaged Quarkus
# application: io.apicurio:apicurio-registry-app:3.0.9:zip:all (a runner jar and
# its lib/).  Newer 3.x app artifacts and the 2.x runner jars are not on Maven
# Central (checked 2026-11-22), so 3.0.9 is pinned.  Storage is SQL on an H2
# database file under .local/stack/<profile>/registry, so schemas and their ids
# survive restarts.  The Confluent-compatible API is at /apis/ccompat/v7.
# shellcheck shell=bash disable=SC2154

registry_version=3.0.9
registry_dir=$cache/apicurio-registry-$registry_version

registry_fetch() {
  [ -f "$registry_dir/apicurio-registry-app-$registry_version-runner.jar" ] && return 0
  log "fetching Apicurio Registry $registry_version from Maven Central"
  local tmp
  tmp=$(mktemp -d)
  if ! mvn -q -B dependency:copy \
      -Dartifact="io.apicurio:apicurio-registry-app:$registry_version:zip:all" \
      -DoutputDirectory="$tmp" >"$tmp/mvn.log" 2>&1; then
    echo "stack: fetching Apicurio Registry from Maven Central failed:" >&2
    tail -n 30 "$tmp/mvn.log" >&2
    rm -rf "$tmp"
    return 1
  fi
  mkdir -p "$registry_dir.partial"
  unzip -q -o "$tmp"/apicurio-registry-app-*.zip -d "$registry_dir.partial"
  rm -rf "$registry_dir" "$tmp"
  mv "$registry_dir.partial" "$registry_dir"
}

registry_ready() {
  curl -fsS -m 2 "http://127.0.0.1:$reg_port/apis/ccompat/v7/subjects" >/dev/null 2>&1
}

registry_start() {
  mkdir -p "$state/registry" "$logs"
  setsid nohup java -Xms128m -Xmx512m \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$reg_port" \
    -Dquarkus.management.enabled=false \
    -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
    -Dapicurio.datasource.url="jdbc:h2:file:$state/registry/registry" \
    -Dapicurio.datasource.username=sa -Dapicurio.datasource.password=sa \
    -jar "$registry_dir/apicurio-registry-app-$registry_version-runner.jar" \
    >>"$logs/registry.log" 2>&1 </dev/null &
  echo $! >"$state/registry.pid"
}
