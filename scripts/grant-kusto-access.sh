#!/bin/sh
# Grants the app's identity its Kusto database roles: deploys infra/kusto-access.bicep (Ingestor, and User or
# Viewer) into the cluster's resource group. It runs as the azd `postprovision` hook, right after main.bicep
# has created the identity and before the code is deployed, or by hand after `az deployment group create`.
#
# Why a hook and not a module of main.bicep: Kusto checks the principal against Microsoft Entra ID when an
# assignment is created, and refuses an identity created moments earlier ("Entity ID '...' of type 'AAD
# Application Id' was not found in AAD tenant ...") until it has replicated, which can take minutes. A
# template cannot wait, so the first `azd up` failed there. This script retries the same deployment while,
# and only while, the error says the principal was not found: at most KUSTO_GRANT_ATTEMPTS tries
# RETRY_DELAY_SECONDS apart (5 minutes by default). Any other error stops it at once. Re-running it is safe:
# the assignments have fixed names, so a second run updates them.
#
# It acts through the Azure CLI, in the cluster's subscription (read from the cluster's resource id and passed
# as --subscription on every call); `azd auth login` does not log in the Azure CLI, and when `az` is not logged
# in or cannot see that subscription the script stops at once and says so (scripts/azure-cli.sh).
#
# Inputs (azd passes the environment's values):
#   KUSTO_CLUSTER_RESOURCE_ID   /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Kusto/clusters/<name>;
#                               empty: nothing to do (grant the roles by hand, docs/deployment.md)
#   KUSTO_DATABASE_NAME         the database the app ingests into (required with the cluster id)
#   KUSTO_QUERY_ROLE            optional: User (default) or Viewer, granted next to Ingestor
#   MANAGED_IDENTITY_CLIENT_ID  main.bicep output: Kusto names app principals by client (application) id
#   KUSTO_GRANT_ATTEMPTS        optional; tries while the identity is not found (default 20)
#   RETRY_DELAY_SECONDS         optional; pause between tries (default 15)
set -eu

cd "$(dirname "$0")/.."
. scripts/azure-cli.sh

hook=grant-kusto-access
if [ -z "${KUSTO_CLUSTER_RESOURCE_ID:-}" ]; then
    echo "$hook: KUSTO_CLUSTER_RESOURCE_ID is not set, so no Kusto grants are made; grant the identity Ingestor and"
    echo "  User on the database by hand (docs/deployment.md, \"Kusto side\")"
    exit 0
fi
: "${KUSTO_DATABASE_NAME:?set KUSTO_DATABASE_NAME (azd env set KUSTO_DATABASE_NAME <database>): it is required with KUSTO_CLUSTER_RESOURCE_ID}"
: "${MANAGED_IDENTITY_CLIENT_ID:?set MANAGED_IDENTITY_CLIENT_ID (main.bicep output)}"
role="${KUSTO_QUERY_ROLE:-User}"
attempts="${KUSTO_GRANT_ATTEMPTS:-20}"
delay="${RETRY_DELAY_SECONDS:-15}"

case "$role" in
    User | Viewer) ;;
    *)
        echo "$hook: KUSTO_QUERY_ROLE must be User or Viewer, not '$role'" >&2
        exit 1
        ;;
esac

# /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Kusto/clusters/<name> (ARM ids ignore case).
saved_ifs="$IFS"
IFS=/
set -f
# shellcheck disable=SC2086  # split on / on purpose
set -- $KUSTO_CLUSTER_RESOURCE_ID
set +f
IFS="$saved_ifs"
shape="$(printf '%s/%s/%s/%s/%s' "${2:-}" "${4:-}" "${6:-}" "${7:-}" "${8:-}" | tr 'A-Z' 'a-z')"
if [ "$#" -ne 9 ] || [ -n "$1" ] || [ "$shape" != "subscriptions/resourcegroups/providers/microsoft.kusto/clusters" ] ||
    [ -z "$3" ] || [ -z "$5" ] || [ -z "$9" ]; then
    echo "$hook: KUSTO_CLUSTER_RESOURCE_ID is not a cluster's resource id" >&2
    echo "  (/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Kusto/clusters/<name>): $KUSTO_CLUSTER_RESOURCE_ID" >&2
    exit 1
fi
subscription="$3"
resource_group="$5"
cluster="$9"

az_require_subscription "$hook" "$subscription"

work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT INT TERM
error_file="$work_dir/az.err"

# Kusto's answer while the new identity is not visible to it yet (and ARM's, for the same cause).
not_replicated='(was not found in|does not exist in) (the )?(AAD|Azure AD|Azure Active Directory|Microsoft Entra|Entra|directory|tenant)|PrincipalNotFound'

attempt=1
while :; do
    echo "$hook: granting Ingestor and $role on database '$KUSTO_DATABASE_NAME' of cluster $cluster (try $attempt of $attempts)"
    if az deployment group create --subscription "$subscription" --resource-group "$resource_group" \
        --name "kusto-access-$MANAGED_IDENTITY_CLIENT_ID" --template-file infra/kusto-access.bicep \
        --parameters "clusterName=$cluster" "databaseName=$KUSTO_DATABASE_NAME" \
        "principalClientId=$MANAGED_IDENTITY_CLIENT_ID" "queryRole=$role" \
        --output none 2>"$error_file"; then
        echo "$hook: the identity $MANAGED_IDENTITY_CLIENT_ID holds Ingestor and $role on '$KUSTO_DATABASE_NAME'"
        exit 0
    fi
    if ! grep -Eqi "$not_replicated" "$error_file"; then
        cat "$error_file" >&2
        if az_login_problem "$error_file"; then
            echo "$hook: the Azure CLI's login may not grant roles on cluster $cluster (see above): it needs rights on the" >&2
            echo "  cluster (e.g. AllDatabasesAdmin or Contributor); run 'az login' with such an account" >&2
        else
            echo "$hook: the Kusto grants failed (see above); this is not the identity still replicating, so no retry" >&2
        fi
        exit 1
    fi
    if [ "$attempt" -ge "$attempts" ]; then
        cat "$error_file" >&2
        echo "$hook: Kusto still does not find identity $MANAGED_IDENTITY_CLIENT_ID after $attempts tries; re-run" >&2
        echo "  'azd hooks run postprovision' (or this script) in a few minutes" >&2
        exit 1
    fi
    echo "$hook: Kusto does not see the new identity yet (it is replicating in Microsoft Entra ID); retrying in ${delay}s"
    attempt=$((attempt + 1))
    sleep "$delay"
done
