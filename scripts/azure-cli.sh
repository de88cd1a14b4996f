# Sourced (not run) by the azd hooks in this folder. They act through the Azure CLI, which `azd auth login`
# does not log in, so before anything else each hook checks that `az` is installed, logged in, and can see the
# subscription it is about to act in, and passes that subscription explicitly on every call it makes (never
# `az account set`, which would change the user's default for every other shell). When it cannot act, it
# says so at once instead of retrying for minutes.
#
#   az_require_subscription <hook name> <subscription id>   exits 1 with what to do when the CLI cannot act
#   az_login_problem <file>                                  true when the az error text in <file> is about the
#                                                            login or its rights (retrying will not help)

az_require_subscription() {
    az_hook="$1"
    az_subscription="$2"
    if ! command -v az >/dev/null 2>&1; then
        echo "$az_hook: the Azure CLI (az) is not installed; this hook needs it (https://aka.ms/azure-cli)" >&2
        exit 1
    fi
    # One call, with the subscription like every other: it fails when the CLI has no login at all ("Please run
    # 'az login' to setup account.") and when its login cannot see the subscription.
    if ! az_error="$(az account show --subscription "$az_subscription" --output none 2>&1 >/dev/null)"; then
        case "$az_error" in
            *"az login"*)
                echo "$az_hook: the Azure CLI is not logged in: run 'az login' (azd auth login does not log in the Azure CLI, which this hook uses)" >&2
                ;;
            *)
                printf '%s\n' "$az_error" >&2
                echo "$az_hook: the Azure CLI's login cannot see subscription $az_subscription: run 'az login' with an account that has access to it (az login --tenant <tenant id> for another tenant; azd auth login does not log in the Azure CLI)" >&2
                ;;
        esac
        exit 1
    fi
}

az_login_problem() {
    grep -Eqi "az login|AADSTS[0-9]|InvalidAuthenticationToken|ExpiredAuthenticationToken|AuthorizationFailed|does not have authorization" "$1"
}
