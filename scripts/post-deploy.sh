#!/bin/sh
# Stage two of the deployment: create the Event Grid subscription that feeds the Event Grid-source blob
# trigger. It runs after the code is deployed (azd `postdeploy` hook, or by hand after `func publish`)
# because the webhook needs the host's `blobs_extension` system key, which exists only once the app and
# its blob trigger are running, and Event Grid validates the webhook when the subscription is created.
#
# The key is read into a variable, handed to `az deployment` through a private temporary parameters
# file (not the command line, which other users can see), and never printed: no `set -x`, `--output
# none`, and any az error text is passed through a filter that blanks `code=` before it is shown.
#
# It acts through the Azure CLI, in the azd environment's subscription (AZURE_SUBSCRIPTION_ID, passed as
# --subscription on every call). `azd auth login` does not log in the Azure CLI: when `az` is not logged in or
# cannot see that subscription, the script stops at once and says so (scripts/azure-cli.sh).
#
# Inputs (azd provides the first five from the environment and main.bicep's outputs):
#   AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME, EVENT_GRID_SYSTEM_TOPIC_NAME,
#   STAGING_CONTAINER
#   DEAD_LETTER_CONTAINER  optional (main.bicep output); defaults to the deadLetterContainerName default in
#                          infra/eventgrid.bicep
#   BLOB_FUNCTION_NAME     optional; defaults to the blobFunctionName default in infra/eventgrid.bicep
#   KEY_WAIT_ATTEMPTS      optional; waits for the key to appear (default 30)
#   RETRY_DELAY_SECONDS    optional; pause between tries (default 10)
set -eu

cd "$(dirname "$0")/.."
. scripts/azure-cli.sh

: "${AZURE_SUBSCRIPTION_ID:?set AZURE_SUBSCRIPTION_ID (azd sets it from the environment; by hand: the subscription of the resource group)}"
: "${AZURE_RESOURCE_GROUP:?set AZURE_RESOURCE_GROUP (azd sets it from the environment)}"
: "${AZURE_FUNCTION_APP_NAME:?set AZURE_FUNCTION_APP_NAME (main.bicep output)}"
: "${EVENT_GRID_SYSTEM_TOPIC_NAME:?set EVENT_GRID_SYSTEM_TOPIC_NAME (main.bicep output)}"
: "${STAGING_CONTAINER:?set STAGING_CONTAINER (main.bicep output)}"
attempts="${KEY_WAIT_ATTEMPTS:-30}"
delay="${RETRY_DELAY_SECONDS:-10}"
subscription="$AZURE_SUBSCRIPTION_ID"

az_require_subscription post-deploy "$subscription"

redact() {
    sed -e 's/code=[^&"'"'"' ]*/code=REDACTED/g' -e 's/"blobsExtensionKey"[^}]*}/"blobsExtensionKey": REDACTED}/g'
}

work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT INT TERM
chmod 700 "$work_dir"
params_file="$work_dir/secure.parameters.json"
error_file="$work_dir/az.err"

echo "post-deploy: waiting for the blobs_extension key of $AZURE_FUNCTION_APP_NAME"
key=""
attempt=0
while [ -z "$key" ]; do
    key="$(az functionapp keys list --subscription "$subscription" --resource-group "$AZURE_RESOURCE_GROUP" \
        --name "$AZURE_FUNCTION_APP_NAME" --query "systemKeys.blobs_extension" --output tsv 2>"$error_file" || true)"
    [ -n "$key" ] && break
    if az_login_problem "$error_file"; then
        # A login that expired or lacks rights on the app: waiting for the host will not fix that.
        redact <"$error_file" >&2
        echo "post-deploy: the Azure CLI cannot read the keys of $AZURE_FUNCTION_APP_NAME in subscription $subscription (see the" >&2
        echo "  error above): run 'az login' with an account that has access (azd auth login does not log in the Azure CLI)" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    if [ "$attempt" -ge "$attempts" ]; then
        redact <"$error_file" >&2
        echo "post-deploy: no blobs_extension key after $attempts tries. Is the code deployed and does the" >&2
        echo "  app have an Event Grid-source blob trigger? Check 'az functionapp function list' and the logs." >&2
        exit 1
    fi
    sleep "$delay"
done

# A host key is base64url-like text; anything else would break the JSON below, so refuse it.
case "$key" in
    *[!A-Za-z0-9_=/+-]*)
        echo "post-deploy: the blobs_extension key has unexpected characters; not deploying" >&2
        exit 1
        ;;
esac
umask 077
printf '{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#", "contentVersion": "1.0.0.0", "parameters": {"blobsExtensionKey": {"value": "%s"}}}\n' "$key" >"$params_file"
key=""

set -- --parameters "systemTopicName=$EVENT_GRID_SYSTEM_TOPIC_NAME" "functionAppName=$AZURE_FUNCTION_APP_NAME" \
    "stagingContainerName=$STAGING_CONTAINER"
if [ -n "${DEAD_LETTER_CONTAINER:-}" ]; then
    set -- "$@" "deadLetterContainerName=$DEAD_LETTER_CONTAINER"
fi
if [ -n "${BLOB_FUNCTION_NAME:-}" ]; then
    set -- "$@" "blobFunctionName=$BLOB_FUNCTION_NAME"
fi

# Event Grid validates the webhook on creation; a host that is still starting can fail it, so retry.
for try in 1 2 3 4 5; do
    echo "post-deploy: creating the BlobCreated subscription on $EVENT_GRID_SYSTEM_TOPIC_NAME (try $try)"
    if az deployment group create --subscription "$subscription" --resource-group "$AZURE_RESOURCE_GROUP" \
        --name "eventgrid-blob-trigger" --template-file infra/eventgrid.bicep "$@" --parameters "@$params_file" \
        --output none 2>"$error_file"; then
        echo "post-deploy: Event Grid now delivers BlobCreated events of container $STAGING_CONTAINER to the blob trigger"
        exit 0
    fi
    redact <"$error_file" >&2
    if az_login_problem "$error_file"; then
        echo "post-deploy: the Azure CLI's login cannot deploy to $AZURE_RESOURCE_GROUP in subscription $subscription (see above);" >&2
        echo "  run 'az login' with an account that has access (azd auth login does not log in the Azure CLI)" >&2
        exit 1
    fi
    sleep "$delay"
done
echo "post-deploy: the Event Grid subscription could not be created; see the errors above" >&2
exit 1
