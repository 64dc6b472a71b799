# Shared by scripts/test and scripts/bench (sourced, not run): the project-local virtualenv with the
# pinned test tools, and a moto server on a free loopback port that is stopped when the script exits.
# Sets: venv, work, HANDOVER_TEST_DYNAMODB_ENDPOINT; kills the pids in server_pids on exit.

root=$(pwd)

venv="$root/.venv"
requirements="$root/scripts/requirements-test.txt"
stamp="$venv/.requirements.sha256"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating virtualenv $venv"
  python3 -m venv "$venv"
fi
wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "==> installing test tools into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" > "$stamp"
fi

# The SDK must never look for cloud credentials or metadata: dummy keys, a region, no IMDS.
export AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_EC2_METADATA_DISABLED=true

work=$(mktemp -d)
server_pids=()
stop_servers() {
  for pid in "${server_pids[@]}"; do
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

echo "==> starting moto (DynamoDB-compatible server)"
"$venv/bin/python" scripts/moto_dynamodb.py --port-file "$work/port" > "$work/moto.log" 2>&1 &
moto_pid=$!
server_pids+=("$moto_pid")
for _ in $(seq 1 100); do
  [ -s "$work/port" ] && break
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "moto exited before listening:" >&2
    cat "$work/moto.log" >&2
    exit 1
  fi
  sleep 0.2
done
if [ ! -s "$work/port" ]; then
  echo "moto did not start listening within 20 s:" >&2
  cat "$work/moto.log" >&2
  exit 1
fi
export HANDOVER_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$(cat "$work/port")"
echo "    listening on $HANDOVER_TEST_DYNAMODB_ENDPOINT"

