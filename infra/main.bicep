/* Staging-blob -> Azure Data Explorer ingestion app: Flex Consumption function app, staging storage,
a user-assigned identity with narrowly scoped roles, Event Grid system topic, monitoring and alerting.

Deployed at resource-group scope (`azd up` asks for, or creates, the resource group; or
`az deployment group create`). Two steps run outside this template, as azd hooks:
- the Kusto database grants (`kusto-access.bicep`, run by `scripts/grant-kusto-access.sh` after
  provisioning), because Kusto refuses a principal until the new identity has replicated in Entra ID, which
  can take minutes, and only a script can wait and retry;
- the Event Grid subscription that feeds the blob trigger (`eventgrid.bicep`, run by
  `scripts/post-deploy.sh`), because its webhook key exists only after the code is deployed.
Every app setting below is one the code reads (`shared/settings.py`) or one the Functions host reads;
`tests/infra` checks both directions. */

targetScope = 'resourceGroup'

//********************************************
// Parameters
//********************************************

@description('Name of the azd environment; seeds resource names and the azd-env-name tag.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Region of every resource (defaults to the resource group\'s region).')
@minLength(1)
param location string = resourceGroup().location

@description('Name of the function app; empty generates func-<token>. It is also the host name <name>.azurewebsites.net.')
@maxLength(60)
param functionAppName string = ''

@description('Upper bound of instances the Flex Consumption plan may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Kusto ingestion (Data Management) endpoint, https://ingest-<cluster>.<region>.kusto.windows.net (KUSTO_INGEST_URI).')
@minLength(1)
param kustoIngestUri string

@description('Token scope for Kusto requests (KUSTO_TOKEN_SCOPE); empty means <kustoIngestUri>/.default.')
param kustoTokenScope string = ''

@description('Timeout of one request to Kusto, in seconds (KUSTO_REQUEST_TIMEOUT_SECONDS).')
@minValue(1)
@maxValue(600)
param kustoRequestTimeoutSeconds int = 30

@description('How Kusto reads staged blobs (BLOB_ACCESS): the cluster\'s managed identity, or a user-delegation SAS signed by the app\'s identity (adds the Storage Blob Delegator role).')
@allowed([
  'managed_identity'
  'user_delegation_sas'
])
param blobAccess string = 'managed_identity'

@description('Identity named in \';managed_identity=...\' blob URLs (BLOB_ACCESS_IDENTITY): \'system\' for the cluster\'s system-assigned identity, or the object id of a user-assigned one.')
@minLength(1)
param blobAccessIdentity string = 'system'

@description('Lifetime of the read-only user-delegation SAS handed to Kusto, in minutes (SAS_LIFETIME_MINUTES).')
@minValue(5)
@maxValue(10080)
param sasLifetimeMinutes int = 360

@description('Container watched by the blob trigger (STAGING_CONTAINER).')
@minLength(3)
@maxLength(63)
param stagingContainerName string = 'staging'

@description('Container that permanently failed blobs are moved to (QUARANTINE_CONTAINER).')
@minLength(3)
@maxLength(63)
param quarantineContainerName string = 'quarantine'

@description('Container of the app\'s own state: digest windows, the submission ledger, alert markers (STATE_CONTAINER).')
@minLength(3)
@maxLength(63)
param stateContainerName string = 'ingest-state'

@description('Container Event Grid writes BlobCreated events to when it cannot deliver them to the blob trigger after all retries (DEAD_LETTER_CONTAINER).')
@minLength(3)
@maxLength(63)
param deadLetterContainerName string = 'ingest-deadletter'

@description('Queue of blobs waiting to be submitted (PENDING_QUEUE).')
@minLength(3)
@maxLength(56)
param pendingQueueName string = 'ingest-pending'

@description('Queue of failure notifications that become alerts (FAILURES_QUEUE).')
@minLength(3)
@maxLength(56)
param failuresQueueName string = 'ingest-failures'

@description('Queue of accepted operations whose outcome is not known yet (TRACKING_QUEUE).')
@minLength(3)
@maxLength(56)
param trackingQueueName string = 'ingest-tracking'

@description('NCRONTAB schedule of the submission timer, 6 fields, UTC (SUBMIT_SCHEDULE).')
param submitSchedule string = '*/10 * * * * *'

@description('How long one timer run may drain the pending queue, in seconds (DRAIN_TIME_BUDGET_SECONDS).')
@minValue(1)
@maxValue(3600)
param drainTimeBudgetSeconds int = 60

@description('How many submissions run at once in one timer run (SUBMIT_CONCURRENCY).')
@minValue(1)
@maxValue(64)
param submitConcurrency int = 8

@description('Cap on blobs per ingestion request; the server\'s maxBlobsPerBatch wins when lower (MAX_BLOBS_PER_BATCH).')
@minValue(1)
@maxValue(1000)
param maxBlobsPerBatch int = 20

@description('How long a received pending message stays hidden before it is retried, in seconds (PENDING_VISIBILITY_TIMEOUT_SECONDS).')
@minValue(5)
@maxValue(604800)
param pendingVisibilityTimeoutSeconds int = 300

@description('Reads of a pending message before it moves to the poison queue and alerts (PENDING_MAX_DEQUEUE_COUNT).')
@minValue(1)
@maxValue(100)
param pendingMaxDequeueCount int = 5

@description('Seconds a blob that Kusto keeps deferring is retried before it alerts as Submission_TimedOut (PENDING_MAX_AGE_SECONDS).')
@minValue(60)
@maxValue(518400)
param pendingMaxAgeSeconds int = 21600

@description('Routing rules as inline JSON (ROUTING_RULES); empty uses the path convention <database>/<table>/... only.')
param routingRules string = ''

@description('Comma-separated database.table patterns blobs may be routed to, * and ? wildcards (ALLOWED_TARGETS).')
@minLength(1)
param allowedTargets string = '*'

@description('rest: the queued-ingestion REST endpoint; queue: the queue-based protocol (SUBMISSION_MODE).')
@allowed([
  'rest'
  'queue'
])
param submissionMode string = 'rest'

@description('Queue mode only: which ingestion outcomes Kusto reports (REPORT_LEVEL). None is not offered: failures could not alert.')
@allowed([
  'FailuresOnly'
  'FailuresAndSuccesses'
])
param reportLevel string = 'FailuresOnly'

@description('Queue mode only: where Kusto reports outcomes (REPORT_METHOD). Table alone is not offered: the app reads failures from the queue.')
@allowed([
  'Queue'
  'QueueAndTable'
])
param reportMethod string = 'Queue'

@description('NCRONTAB schedule of the outcome tracker, 6 fields, UTC (TRACK_SCHEDULE).')
param trackSchedule string = '*/15 * * * * *'

@description('How long an operation is tracked before its blobs alert as Tracking_TimedOut, in seconds (TRACKING_HORIZON_SECONDS).')
@minValue(1)
@maxValue(604800)
param trackingHorizonSeconds int = 21600

@description('Delay before the first status poll of an operation, in seconds; doubles after each poll (TRACKING_POLL_INITIAL_SECONDS).')
@minValue(1)
@maxValue(3600)
param trackingPollInitialSeconds int = 10

@description('Longest delay between two status polls of one operation, in seconds (TRACKING_POLL_MAX_SECONDS).')
@minValue(1)
@maxValue(86400)
param trackingPollMaxSeconds int = 300

@description('Cap on operations polled by one tracker run (TRACKING_MAX_PER_RUN).')
@minValue(1)
@maxValue(100000)
param trackingMaxPerRun int = 512

@description('Resubmissions of a transiently failed blob before it alerts as Exhausted; 0 never resubmits (RESUBMIT_MAX_ATTEMPTS).')
@minValue(0)
@maxValue(100)
param resubmitMaxAttempts int = 3

@description('Delete a staged blob once Kusto confirms it was ingested (DELETE_ON_SUCCESS).')
param deleteOnSuccess bool = false

@description('NCRONTAB schedule of the poison-queue watcher, the digest flush and state clean-up, 6 fields, UTC (HOUSEKEEPING_SCHEDULE).')
param housekeepingSchedule string = '0 * * * * *'

@description('NCRONTAB schedule of the reconciliation timer, which records staged blobs whose event was lost, 6 fields, UTC (RECONCILE_SCHEDULE).')
param reconcileSchedule string = '0 */30 * * * *'

@description('How far back, in seconds, the reconciler looks for staged blobs the app never recorded (RECONCILE_LOOKBACK_SECONDS).')
@minValue(600)
@maxValue(604800)
param reconcileLookbackSeconds int = 86400

@description('How old, in seconds, a staged blob must be before the reconciler takes its event for lost (RECONCILE_GRACE_SECONDS).')
@minValue(0)
@maxValue(86400)
param reconcileGraceSeconds int = 1800

@description('Repeats of one (database, table, error code) within this many seconds become one digest; 0 turns digests off (ALERT_DIGEST_WINDOW_SECONDS).')
@minValue(0)
@maxValue(604800)
param alertDigestWindowSeconds int = 900

@description('How long a submitted blob version and a raised alert are remembered, so a repeat is dropped; at least pendingVisibilityTimeoutSeconds and drainTimeBudgetSeconds + 60 (DUPLICATE_WINDOW_SECONDS).')
@minValue(300)
@maxValue(604800)
param duplicateWindowSeconds int = 3600

@description('Webhook the app itself posts alerts to (ALERT_WEBHOOK_URL), empty for none. Stored in Key Vault; the app setting is a Key Vault reference.')
@secure()
param alertWebhookUrl string = ''

@description('Payload shape of the app\'s alert webhook (ALERT_WEBHOOK_FORMAT).')
@allowed([
  'json'
  'teams'
  'slack'
])
param alertWebhookFormat string = 'json'

@description('Optional HMAC-SHA256 key that signs the app\'s webhook bodies (ALERT_WEBHOOK_SECRET). Stored in Key Vault.')
@secure()
param alertWebhookSecret string = ''

@description('Object (principal) id of the Kusto cluster\'s managed identity; when set it gets Storage Blob Data Reader on the staging container (needed for BLOB_ACCESS=managed_identity).')
param kustoClusterPrincipalId string = ''

@description('E-mail address that receives ingestion-failure alerts; empty for none.')
param alertEmailAddress string = ''

@description('Webhook the Azure Monitor action group calls for the log alert (common alert schema); empty for none. Treated as a secret.')
@secure()
param actionGroupWebhookUrl string = ''

@description('Severity of the ingestion-failure alert, 0 (critical) to 4 (verbose).')
@minValue(0)
@maxValue(4)
param alertSeverity int = 1

@description('How often the ingestion-failure alert query runs (ISO 8601 duration); the query looks back over the same window.')
@allowed([
  'PT1M'
  'PT5M'
  'PT15M'
  'PT30M'
  'PT1H'
])
param alertEvaluationFrequency string = 'PT5M'

@description('Failed executions of one function within functionFailureWindow that raise the function-failure alert.')
@minValue(1)
@maxValue(10000)
param functionFailureThreshold int = 10

@description('How far back the function-failure alert counts failed executions (ISO 8601 duration).')
@allowed([
  'PT5M'
  'PT15M'
  'PT30M'
  'PT1H'
])
param functionFailureWindow string = 'PT15M'

@description('Days the Log Analytics workspace keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

//********************************************
// Variables
//********************************************

var resourceToken = toLower(uniqueString(resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var appName = !empty(functionAppName) ? functionAppName : 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(appName, 32)}-${take(resourceToken, 7)}'
var pythonVersion = '3.11'

// The app's own webhook URL and signing key are secrets: they live in Key Vault and the app settings
// hold Key Vault references resolved with the app's identity, so no secret is stored in site config.
var hasAppWebhook = !empty(alertWebhookUrl)
var hasAppWebhookSecret = !empty(alertWebhookSecret)
var keyVaultName = 'kv-${resourceToken}'
var webhookUrlSecretName = 'alert-webhook-url'
var webhookSecretSecretName = 'alert-webhook-secret'

// Queues the app writes and reads, the poison queues the host moves failed messages to, and the
// blob trigger's own poison queue. Created up front so the first failure never races queue creation.
var queueNames = [
  pendingQueueName
  '${pendingQueueName}-poison'
  failuresQueueName
  '${failuresQueueName}-poison'
  trackingQueueName
  '${trackingQueueName}-poison'
  'webjobs-blobtrigger-poison'
]

// Built-in role definition ids.
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataReaderRoleId = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageBlobDelegatorRoleId = 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

//********************************************
// Monitoring
//********************************************

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    retentionInDays: logRetentionInDays
    sku: {
      name: 'PerGB2018'
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

//********************************************
// Identity
//********************************************

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${resourceToken}'
  location: location
  tags: tags
}

//********************************************
// Storage: host storage, staging container, the app's queues, the deployment package
//********************************************

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }

  resource blobService 'blobServices' = {
    name: 'default'

    resource stagingContainer 'containers' = {
      name: stagingContainerName
      properties: {
        publicAccess: 'None'
      }
    }

    resource quarantineContainer 'containers' = {
      name: quarantineContainerName
      properties: {
        publicAccess: 'None'
      }
    }

    resource stateContainer 'containers' = {
      name: stateContainerName
      properties: {
        publicAccess: 'None'
      }
    }

    // Event Grid writes the BlobCreated events it could not deliver here (eventgrid.bicep), as its system
    // topic's identity, which may write to this container only.
    resource deadLetterContainer 'containers' = {
      name: deadLetterContainerName
      properties: {
        publicAccess: 'None'
      }
    }

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

  resource queueService 'queueServices' = {
    name: 'default'

    resource queues 'queues' = [
      for queueName in queueNames: {
        name: queueName
      }
    ]
  }
}

//********************************************
// Key Vault for the app's alert-webhook secrets (only when a webhook is configured)
//********************************************

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = if (hasAppWebhook) {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }

  resource webhookUrlSecret 'secrets' = {
    name: webhookUrlSecretName
    properties: {
      value: alertWebhookUrl
    }
  }

  resource webhookSigningSecret 'secrets' = if (hasAppWebhookSecret) {
    name: webhookSecretSecretName
    properties: {
      value: alertWebhookSecret
    }
  }
}

//********************************************
// Role assignments (function identity; Kusto cluster identity)
//********************************************

// Blob data: the host keeps blob receipts, timer locks and keys in containers it creates itself
// (azure-webjobs-hosts, azure-webjobs-secrets), so this cannot be narrower than the account.
resource blobDataOwnerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Queues: the app's queues plus the host's internal blob-trigger queues, all on this account.
resource queueDataContributorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, storageQueueDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Tables: the host writes its diagnostic events to AzureWebJobsStorage's table service.
resource tableDataContributorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, storageTableDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// A user-delegation key is issued per account, so the delegator role only exists at account scope.
resource blobDelegatorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (blobAccess == 'user_delegation_sas') {
  name: guid(storage.id, appIdentity.id, storageBlobDelegatorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDelegatorRoleId)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisherAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appIdentity.id, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault references: read the vault's secrets, which are only the app's webhook URL and signing key.
resource keyVaultSecretsUserAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasAppWebhook) {
  name: guid(keyVault.id, appIdentity.id, keyVaultSecretsUserRoleId)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The Kusto cluster reads staged blobs with its own identity (';managed_identity=' URLs): read-only,
// and only the staging container.
resource kustoBlobReaderAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(kustoClusterPrincipalId)) {
  name: guid(storage::blobService::stagingContainer.id, kustoClusterPrincipalId, storageBlobDataReaderRoleId)
  scope: storage::blobService::stagingContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReaderRoleId)
    principalId: kustoClusterPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Event Grid dead-letters undeliverable events with the system topic's own identity (eventgrid.bicep
// deadLetterWithResourceIdentity; shared-key access is off, so there is no other way in): write access to the
// dead-letter container only.
resource deadLetterWriterAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::deadLetterContainer.id, stagingEvents.id, storageBlobDataContributorRoleId)
  scope: storage::blobService::deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: stagingEvents.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The Kusto database principal assignments are not made here: see scripts/grant-kusto-access.sh (azd
// postprovision hook), which deploys kusto-access.bicep and retries while the new identity replicates.

//********************************************
// Function app on a Flex Consumption plan
//********************************************

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': 'ingest'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: appIdentity.id
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }

  // The whole app configuration. Names on the left match shared/settings.py SETTING_NAMES, except the
  // host-read AzureWebJobsStorage__* and APPLICATIONINSIGHTS_* (the allow-list in tests/infra).
  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
      AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
      AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: appIdentity.properties.clientId
      APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD'
      StagingStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
      StagingStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
      StagingStorage__credential: 'managedidentity'
      StagingStorage__clientId: appIdentity.properties.clientId
      STAGING_CONTAINER: stagingContainerName
      BLOB_TRIGGER_SOURCE: 'EventGrid'
      PENDING_QUEUE: pendingQueueName
      FAILURES_QUEUE: failuresQueueName
      TRACKING_QUEUE: trackingQueueName
      SUBMIT_SCHEDULE: submitSchedule
      DRAIN_TIME_BUDGET_SECONDS: string(drainTimeBudgetSeconds)
      SUBMIT_CONCURRENCY: string(submitConcurrency)
      MAX_BLOBS_PER_BATCH: string(maxBlobsPerBatch)
      PENDING_VISIBILITY_TIMEOUT_SECONDS: string(pendingVisibilityTimeoutSeconds)
      PENDING_MAX_DEQUEUE_COUNT: string(pendingMaxDequeueCount)
      PENDING_MAX_AGE_SECONDS: string(pendingMaxAgeSeconds)
      KUSTO_INGEST_URI: kustoIngestUri
      KUSTO_TOKEN_SCOPE: !empty(kustoTokenScope) ? kustoTokenScope : '${kustoIngestUri}/.default'
      KUSTO_CREDENTIAL: 'managedidentity'
      MANAGED_IDENTITY_CLIENT_ID: appIdentity.properties.clientId
      KUSTO_REQUEST_TIMEOUT_SECONDS: string(kustoRequestTimeoutSeconds)
      BLOB_ACCESS: blobAccess
      BLOB_ACCESS_IDENTITY: blobAccessIdentity
      SAS_LIFETIME_MINUTES: string(sasLifetimeMinutes)
      ROUTING_RULES: routingRules
      ALLOWED_TARGETS: allowedTargets
      SUBMISSION_MODE: submissionMode
      REPORT_LEVEL: reportLevel
      REPORT_METHOD: reportMethod
      TRACK_SCHEDULE: trackSchedule
      TRACKING_HORIZON_SECONDS: string(trackingHorizonSeconds)
      TRACKING_POLL_INITIAL_SECONDS: string(trackingPollInitialSeconds)
      TRACKING_POLL_MAX_SECONDS: string(trackingPollMaxSeconds)
      TRACKING_MAX_PER_RUN: string(trackingMaxPerRun)
      RESUBMIT_MAX_ATTEMPTS: string(resubmitMaxAttempts)
      QUARANTINE_CONTAINER: quarantineContainerName
      DELETE_ON_SUCCESS: deleteOnSuccess ? 'true' : 'false'
      ALERT_WEBHOOK_URL: hasAppWebhook ? '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${webhookUrlSecretName})' : ''
      ALERT_WEBHOOK_FORMAT: alertWebhookFormat
      ALERT_WEBHOOK_SECRET: hasAppWebhookSecret
        ? '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${webhookSecretSecretName})'
        : ''
      ALERT_DIGEST_WINDOW_SECONDS: string(alertDigestWindowSeconds)
      STATE_CONTAINER: stateContainerName
      DEAD_LETTER_CONTAINER: deadLetterContainerName
      DUPLICATE_WINDOW_SECONDS: string(duplicateWindowSeconds)
      HOUSEKEEPING_SCHEDULE: housekeepingSchedule
      RECONCILE_SCHEDULE: reconcileSchedule
      RECONCILE_LOOKBACK_SECONDS: string(reconcileLookbackSeconds)
      RECONCILE_GRACE_SECONDS: string(reconcileGraceSeconds)
    }
    dependsOn: [
      blobDataOwnerAssignment
      queueDataContributorAssignment
      tableDataContributorAssignment
      metricsPublisherAssignment
      keyVaultSecretsUserAssignment
      keyVault::webhookUrlSecret
      keyVault::webhookSigningSecret
    ]
  }
}

//********************************************
// Event Grid system topic (its subscription is stage two: eventgrid.bicep)
//********************************************

resource stagingEvents 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-${resourceToken}'
  location: location
  tags: tags
  // Dead-lettering writes to the dead-letter container with this identity (deadLetterWriterAssignment).
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

//********************************************
// Alerting and workbook
//********************************************

module alerting 'alerting.bicep' = {
  name: 'alerting-${resourceToken}'
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    appInsightsName: appInsights.name
    storageAccountName: storage.name
    alertEmailAddress: alertEmailAddress
    actionGroupWebhookUrl: actionGroupWebhookUrl
    alertSeverity: alertSeverity
    evaluationFrequency: alertEvaluationFrequency
    functionFailureThreshold: functionFailureThreshold
    functionFailureWindow: functionFailureWindow
  }
}

//********************************************
// Outputs (azd stores them in the environment; scripts/post-deploy.sh reads them)
//********************************************

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.name
output STAGING_CONTAINER string = stagingContainerName
output DEAD_LETTER_CONTAINER string = deadLetterContainerName
output EVENT_GRID_SYSTEM_TOPIC_NAME string = stagingEvents.name
output MANAGED_IDENTITY_CLIENT_ID string = appIdentity.properties.clientId
output MANAGED_IDENTITY_PRINCIPAL_ID string = appIdentity.properties.principalId
output APPLICATIONINSIGHTS_NAME string = appInsights.name
output WORKBOOK_ID string = alerting.outputs.workbookId
