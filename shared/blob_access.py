"""The blob URL handed to Kusto, carrying the access Kusto needs to read the blob (BLOB_ACCESS).

* `managed_identity` (the default in Azure): `<url>;managed_identity=<BLOB_ACCESS_IDENTITY>`. No secret
  leaves the app; the cluster's identity needs Storage Blob Data Reader and a NativeIngestion policy.
* `user_delegation_sas`: a short-lived, read-only SAS signed with a user delegation key (the app's own
  identity, no account key). The key is fetched once and reused until it nears its end, so a drain of
  many blobs costs one extra storage call, not one per blob.
* `account_key_sas`: a read-only SAS signed with the account key. Settings allow it only for local storage
  (Azurite), where there is no identity to sign with.

The URL is built here from the configured staging container and the blob name, never taken from a message
(`shared.staging_area`), so access is only ever granted to a staging blob. The URL stored in queues and logs
is always the plain one; the access part exists only inside the request to Kusto.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from azure.storage.blob import BlobSasPermissions, UserDelegationKey, generate_blob_sas

from shared.redaction import plain_blob_url
from shared.staging_area import StagingArea

CLOCK_SKEW = timedelta(minutes=5)
"""SAS start times are set this far back so a storage clock slightly behind ours still accepts them."""
KEY_LIFETIME = timedelta(days=1)
"""How long one user delegation key is requested for (storage allows up to 7 days)."""


class BlobAccess:
    """Gives the URL Kusto reads for a staging blob, by the access `mode` (BLOB_ACCESS)."""

    def __init__(
        self,
        staging: StagingArea,
        *,
        mode: str = "managed_identity",
        identity: str = "system",
        sas_lifetime_minutes: int = 360,
        account_key: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`identity`: who Kusto reads as in `managed_identity` mode; `account_key` signs in `account_key_sas` mode."""
        self._staging = staging
        self._mode = mode
        self._identity = identity
        self._account_key = account_key
        self._now = now
        self._lifetime = timedelta(minutes=sas_lifetime_minutes)
        self._lock = threading.Lock()
        self._key: UserDelegationKey | None = None
        self._key_expires: datetime | None = None

    def url_for(self, blob_name: str) -> str:
        """The URL of `blob_name` in the staging container, with access; RefusedMessageError for a name the trigger refuses."""
        blob = self._staging.blob(blob_name)
        plain = plain_blob_url(blob.url)
        mode = self._mode
        if mode == "managed_identity":
            return f"{plain};managed_identity={self._identity}"
        now = self._now()
        expiry = now + self._lifetime
        key: UserDelegationKey | None = None
        if mode == "user_delegation_sas":
            key, key_expires = self._user_delegation_key(now)
            expiry = min(expiry, key_expires)  # a SAS cannot outlive the key that signs it
        sas = generate_blob_sas(
            account_name=blob.account_name or "",
            container_name=blob.container_name,
            blob_name=blob.blob_name,
            account_key=None if key else self._account_key,
            user_delegation_key=key,
            permission=BlobSasPermissions(read=True),
            start=now - CLOCK_SKEW,
            expiry=expiry,
            protocol="https" if plain.startswith("https://") else None,
        )
        return f"{plain}?{sas}"

    def _user_delegation_key(self, now: datetime) -> tuple[UserDelegationKey, datetime]:
        """The cached key and its expiry, or a new one when the cached one would end before a SAS signed now."""
        with self._lock:
            if self._key is None or self._key_expires is None or now + self._lifetime + CLOCK_SKEW >= self._key_expires:
                expires = now + max(KEY_LIFETIME, 2 * self._lifetime)
                expires = min(expires, now + timedelta(days=7) - CLOCK_SKEW)
                self._key = self._staging.blob_service.get_user_delegation_key(
                    key_start_time=now - CLOCK_SKEW, key_expiry_time=expires
                )
                self._key_expires = expires
            return self._key, self._key_expires
