/* Alerting and the operations workbook. Three log alert rules on the App Insights component, all sending to
the same action group:
- ingestion failures: the app's failure-alert log records (traces whose message starts with the stable key
  KUSTO_INGESTION_FAILURE, written by shared/alerts.py), split by database, table and error code, so each
  distinct failure alerts on its own;
- a function that keeps failing: failed executions (App Insights requests with success == false), split by
  function. A function whose settings are invalid raises on every invocation, so it lands here too;
- an invalid app setting: the app's APP_SETTING_INVALID log records, split by setting, so a feature turned
  off by its own bad setting (an unresolved Key Vault reference in the webhook URL, say) is not silent.
All rules skip query validation: on a first deployment the component was created moments earlier and its
tables may not be known yet, which would fail the deployment. */

//********************************************
// Parameters
//********************************************

@description('Region of the workbook and the alert rule.')
@minLength(1)
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Unique token of the deployment, used in resource names.')
@minLength(3)
param resourceToken string

@description('Name of the Application Insights component the app logs to.')
@minLength(1)
param appInsightsName string

@description('Name of the staging storage account (its queue metrics show the backlog in the workbook).')
@minLength(3)
param storageAccountName string

@description('E-mail address that receives the alerts; empty for none.')
param alertEmailAddress string = ''

@description('Webhook the action group calls (common alert schema); empty for none. Treated as a secret.')
@secure()
param actionGroupWebhookUrl string = ''

@description('Severity of the alert, 0 (critical) to 4 (verbose).')
@minValue(0)
@maxValue(4)
param alertSeverity int = 1

@description('How often the alert query runs and how far back it looks (ISO 8601 duration).')
@allowed([
  'PT1M'
  'PT5M'
  'PT15M'
  'PT30M'
  'PT1H'
])
param evaluationFrequency string = 'PT5M'

@description('Failed executions of one function within functionFailureWindow that raise the function-failure alert (a blob the host gives up on fails 5 times, so keep this above 5).')
@minValue(1)
@maxValue(10000)
param functionFailureThreshold int = 10

@description('How far back the function-failure alert counts failed executions (ISO 8601 duration); it is evaluated every 5 minutes.')
@allowed([
  'PT5M'
  'PT15M'
  'PT30M'
  'PT1H'
])
param functionFailureWindow string = 'PT15M'

//********************************************
// Variables
//********************************************

var hasReceivers = !empty(alertEmailAddress) || !empty(actionGroupWebhookUrl)
var emailReceivers = empty(alertEmailAddress)
  ? []
  : [
      {
        name: 'ingestion-failures-email'
        emailAddress: alertEmailAddress
        useCommonAlertSchema: true
      }
    ]
var webhookReceivers = empty(actionGroupWebhookUrl)
  ? []
  : [
      {
        name: 'ingestion-failures-webhook'
        serviceUri: actionGroupWebhookUrl
        useCommonAlertSchema: true
      }
    ]

// The query lives in its own file so it can be read, tested in Log Analytics and checked against
// shared/alerts.py (tests/infra) without digging through Bicep.
var failureQuery = loadTextContent('queries/ingestion-failures.kql')
var functionFailureQuery = loadTextContent('queries/function-failures.kql')
var settingsErrorQuery = loadTextContent('queries/settings-errors.kql')

// The workbook's queries run against the App Insights component (its source) and the storage account.
var workbookContent = replace(
  loadTextContent('workbook.json'),
  '__STORAGE_ACCOUNT_ID__',
  storageAccount.id
)

//********************************************
// Resources
//********************************************

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (hasReceivers) {
  name: 'ag-ingest-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'ingestfail'
    enabled: true
    emailReceivers: emailReceivers
    webhookReceivers: webhookReceivers
  }
}

resource failureAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-ingestion-failure-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Kusto ingestion failure'
    description: 'A blob could not be loaded into Azure Data Explorer (KUSTO_INGESTION_FAILURE log record). One alert per database, table and error code.'
    severity: alertSeverity
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: evaluationFrequency
    windowSize: evaluationFrequency
    autoMitigate: false
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: failureQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'database'
              operator: 'Include'
              values: [
                '*'
              ]
            }
            {
              name: 'table'
              operator: 'Include'
              values: [
                '*'
              ]
            }
            {
              name: 'errorCode'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: hasReceivers ? [actionGroup.id] : []
    }
  }
}

// A function that keeps failing: a timer or trigger whose runs raise (Kusto or storage unreachable, a missing
// role, invalid settings). One alert per function; it resolves itself once the function runs cleanly again.
resource functionFailureAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-function-failures-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Function app keeps failing'
    description: 'A function of the ingestion app failed at least ${functionFailureThreshold} times within ${functionFailureWindow} (App Insights requests with success == false), for example because its settings are invalid (it logs one ERROR line naming the setting). One alert per function.'
    severity: alertSeverity
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: functionFailureWindow
    autoMitigate: true
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: functionFailureQuery
          timeAggregation: 'Count'
          operator: 'GreaterThanOrEqual'
          threshold: functionFailureThreshold
          dimensions: [
            {
              name: 'functionName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: hasReceivers ? [actionGroup.id] : []
    }
  }
}

resource settingsErrorAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-settings-error-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Invalid app setting'
    description: 'An app setting of the ingestion app is missing or invalid (APP_SETTING_INVALID log record): a required one fails every run, a feature\'s own setting turns that feature off. The record names the setting and the fix. One alert per setting.'
    severity: alertSeverity
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: evaluationFrequency
    windowSize: evaluationFrequency
    autoMitigate: true
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: settingsErrorQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'setting'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: hasReceivers ? [actionGroup.id] : []
    }
  }
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, resourceToken, 'ingestion-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Kusto blob ingestion (${resourceToken})'
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: workbookContent
  }
}

//********************************************
// Outputs
//********************************************

output workbookId string = workbook.id
output alertRuleId string = failureAlert.id
output functionFailureAlertRuleId string = functionFailureAlert.id
