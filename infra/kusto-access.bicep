/* Kusto database access for the function app's user-assigned identity. Deployed into the cluster's
resource group (which may be in another subscription), because database principal assignments are child
resources of the cluster, by scripts/grant-kusto-access.sh (the azd postprovision hook) rather than by
main.bicep: Kusto refuses a principal until the identity main.bicep just created has replicated in
Microsoft Entra ID, so the deployment has to be retried for a few minutes, which a template cannot do. */

//********************************************
// Parameters
//********************************************

@description('Name of the existing Kusto cluster.')
@minLength(4)
param clusterName string

@description('Name of the existing Kusto database the app ingests into.')
@minLength(1)
param databaseName string

@description('Client (application) id of the function app\'s user-assigned identity; Kusto names app principals by application id.')
@minLength(36)
@maxLength(36)
param principalClientId string

@description('Database role granted next to Ingestor, for the status and configuration calls: User (documented for queued ingestion) or Viewer.')
@allowed([
  'User'
  'Viewer'
])
param queryRole string = 'User'

//********************************************
// Variables
//********************************************

// Ingestor lets the identity queue ingestions; the query role lets it read operation status.
var databaseRoles = [
  'Ingestor'
  queryRole
]

//********************************************
// Resources
//********************************************

resource cluster 'Microsoft.Kusto/clusters@2023-08-15' existing = {
  name: clusterName

  resource database 'databases' existing = {
    name: databaseName
  }
}

resource principalAssignments 'Microsoft.Kusto/clusters/databases/principalAssignments@2023-08-15' = [
  for role in databaseRoles: {
    parent: cluster::database
    name: guid(cluster::database.id, principalClientId, role)
    properties: {
      principalId: principalClientId
      principalType: 'App'
      role: role
      tenantId: tenant().tenantId
    }
  }
]

//********************************************
// Outputs
//********************************************

output databaseRoles array = databaseRoles
