"""Event Grid dead-letters what it cannot deliver, with an identity that may write to that one container.

Without a dead-letter destination Event Grid drops an event after its retries, and the blob it announced is
never recorded. The storage account has shared-key access off and every write to it is authorized by a scoped
role, so dead-lettering uses the system topic's managed identity (`deadLetterWithResourceIdentity`), which
holds a role on the dead-letter container only.
"""

from __future__ import annotations

from tests.infra.bicep import (
    INFRA_DIR,
    BicepFile,
    app_settings,
    identifiers,
    literal,
    object_properties,
    parse_file,
    string_literal,
    text,
)
from tests.infra.rules import CONTAINER

DEFAULT_CONTAINER = "ingest-deadletter"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"


def _default(parsed: BicepFile, parameter: str) -> object:
    return literal(parsed.parameters[parameter].node.named_children[-1])


def test_event_grid_subscription_dead_letters_to_the_container_with_the_topic_identity() -> None:
    eventgrid = parse_file(INFRA_DIR / "eventgrid.bicep")
    (subscription,) = eventgrid.resources_of_type("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    dead_letter = subscription.property_path("properties", "deadLetterWithResourceIdentity")
    assert dead_letter is not None, "deadLetterWithResourceIdentity: shared-key access is off, so an identity is needed"
    identity = object_properties(object_properties(dead_letter)["identity"])
    assert string_literal(identity["type"]) == "SystemAssigned"
    destination = object_properties(object_properties(dead_letter)["deadLetterDestination"])
    assert string_literal(destination["endpointType"]) == "StorageBlob"
    target = object_properties(destination["properties"])
    assert identifiers(target["blobContainerName"]) == {"deadLetterContainerName"}
    # The staging account: the account the system topic watches.
    (topic,) = eventgrid.resources_of_type("Microsoft.EventGrid/systemTopics")
    assert text(target["resourceId"]) == f"{topic.symbol}.properties.source"
    assert _default(eventgrid, "deadLetterContainerName") == DEFAULT_CONTAINER
    # Explicit retries: 30 attempts within 24 hours, then the dead-letter container.
    retry = object_properties(subscription.property_path("properties", "retryPolicy"))
    assert identifiers(retry["maxDeliveryAttempts"]) == {"maxDeliveryAttempts"}
    assert identifiers(retry["eventTimeToLiveInMinutes"]) == {"eventTimeToLiveInMinutes"}
    assert _default(eventgrid, "maxDeliveryAttempts") == 30
    assert _default(eventgrid, "eventTimeToLiveInMinutes") == 1440
    assert "deadLetterDestination" not in object_properties(subscription.property_path("properties")), (
        "one dead-letter destination: the identity form, authorized by the topic's role on the container"
    )


def test_main_creates_the_container_gives_the_topic_an_identity_and_only_that_container() -> None:
    main = parse_file(INFRA_DIR / "main.bicep")
    assert _default(main, "deadLetterContainerName") == DEFAULT_CONTAINER
    containers = [
        c
        for c in main.resources_of_type(CONTAINER)
        if identifiers(object_properties(c.body)["name"]) == {"deadLetterContainerName"}
    ]
    assert len(containers) == 1
    container = containers[0]

    (topic,) = main.resources_of_type("Microsoft.EventGrid/systemTopics")
    assert string_literal(topic.property_path("identity", "type")) == "SystemAssigned"

    writers = []
    for assignment in main.resources_of_type("Microsoft.Authorization/roleAssignments"):
        role_vars = {n for n in identifiers(assignment.properties["properties"]) if n in main.variables}
        if any(string_literal(main.variables[n]) == STORAGE_BLOB_DATA_CONTRIBUTOR for n in role_vars):
            writers.append(assignment)
    assert len(writers) == 1, "one Storage Blob Data Contributor assignment: the topic's, on the dead-letter container"
    (writer,) = writers
    assert text(writer.properties["scope"]).endswith(f"::{container.symbol}")
    principal = object_properties(writer.properties["properties"])["principalId"]
    assert text(principal) == f"{topic.symbol}.identity.principalId"
    assert string_literal(object_properties(writer.properties["properties"])["principalType"]) == "ServicePrincipal"


def test_the_container_name_reaches_the_app_and_the_post_deploy_hook() -> None:
    main = parse_file(INFRA_DIR / "main.bicep")
    settings = app_settings(main)
    assert identifiers(settings["DEAD_LETTER_CONTAINER"]) == {"deadLetterContainerName"}
    assert identifiers(main.outputs["DEAD_LETTER_CONTAINER"]) == {"deadLetterContainerName"}
    script = (INFRA_DIR.parent / "scripts" / "post-deploy.sh").read_text(encoding="utf-8")
    assert '"deadLetterContainerName=$DEAD_LETTER_CONTAINER"' in script
