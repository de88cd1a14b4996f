/* Stage two: the Event Grid subscription that feeds the Event Grid-source blob trigger. Deployed by
scripts/post-deploy.sh after the code, because the webhook needs the host's blobs_extension system key,
which exists only once the app with its blob trigger runs; Event Grid validates the endpoint when the
subscription is created. The key is a secure parameter: never logged, never in an output.

Events Event Grid still cannot deliver after maxDeliveryAttempts tries or eventTimeToLiveInMinutes are not
dropped: they are written as blobs to the dead-letter container of the staging account, with the system
topic's own identity (main.bicep gives it Storage Blob Data Contributor on that container only: shared-key
access is off, so every write to the account is authorized by a scoped role assignment). */

//********************************************
// Parameters
//********************************************

@description('Name of the Event Grid system topic on the staging storage account (main.bicep output EVENT_GRID_SYSTEM_TOPIC_NAME).')
@minLength(3)
param systemTopicName string

@description('Name of the function app (main.bicep output AZURE_FUNCTION_APP_NAME).')
@minLength(2)
param functionAppName string

@description('Name of the blob-trigger function in function_app.py; the webhook addresses it as Host.Functions.<name>.')
@minLength(1)
param blobFunctionName string = 'record_staged_blob'

@description('Container watched by the blob trigger; only its BlobCreated events are delivered.')
@minLength(3)
@maxLength(63)
param stagingContainerName string = 'staging'

@description('Container of the staging account that undeliverable events are written to (main.bicep output DEAD_LETTER_CONTAINER).')
@minLength(3)
@maxLength(63)
param deadLetterContainerName string = 'ingest-deadletter'

@description('The host\'s blobs_extension system key (az functionapp keys list ... systemKeys.blobs_extension).')
@secure()
param blobsExtensionKey string

@description('How many times Event Grid retries a delivery before giving up.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('How long Event Grid keeps retrying one event, in minutes.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

//********************************************
// Variables
//********************************************

var webhookPath = '/runtime/webhooks/blobs?functionName=${uriComponent('Host.Functions.${blobFunctionName}')}'

//********************************************
// Resources
//********************************************

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource blobCreatedSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'blob-created-${stagingContainerName}'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}${webhookPath}&code=${blobsExtensionKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${stagingContainerName}/'
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          // The account the system topic watches: the staging account.
          resourceId: systemTopic.properties.source
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

//********************************************
// Outputs
//********************************************

output eventSubscriptionName string = blobCreatedSubscription.name
