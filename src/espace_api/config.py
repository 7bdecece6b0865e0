"""The one settings object, read from the environment (prefix-free, documented in README)."""

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to an upper-case environment variable."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="postgresql:// URL; unset -> embedded Postgres (pgserver) under data_dir",
    )
    data_dir: str = Field(default=".data", description="where the embedded Postgres keeps data")
    base_url: str = Field(
        default="http://127.0.0.1:8000", description="public base URL used in links"
    )
    db_pool_size: int = Field(
        default=32,
        description="connections kept per worker: at least the concurrent requests a worker "
        "takes (above it, overflow connections are opened and closed per request: a read at "
        "32 connections went from 2,110 to 820 req/s with 20 + 10 overflow)",
    )
    db_max_overflow: int = Field(
        default=16,
        description="extra connections opened beyond the pool under bursts (closed when "
        "returned); workers x (pool + overflow) must stay under Postgres' max_connections",
    )
    db_connect_timeout_seconds: float = Field(
        default=5.0, description="a connect to Postgres that takes longer fails (503)"
    )
    db_pool_timeout_seconds: float = Field(
        default=10.0, description="a request waiting longer for a pooled connection fails (503)"
    )
    max_body_bytes: int = Field(default=20 * 1024 * 1024, description="413 beyond this")
    default_page_size: int = 20
    max_page_size: int = 100
    max_bundle_entries: int = Field(default=1000, description="entries of a batch/transaction")
    request_timeout_seconds: float = Field(
        default=30.0, description="a request still running after this is stopped (503)"
    )
    drain_seconds: float = Field(
        default=5.0,
        description="after SIGTERM, new requests get 503 for this long before the server stops",
    )
    machine_rate_per_second: float = Field(
        default=200.0,
        description="requests per second each machine client (system token) may make, per "
        "worker; above it 429 with Retry-After (0: no limit)",
    )
    machine_rate_burst: int = Field(default=400, description="requests a machine may burst")

    # Authentication (issue 3 fills in the details).
    auth_issuer: str = Field(default="", description="issuer of built-in tokens (base_url)")
    auth_builtin_enabled: bool = True
    auth_token_ttl_seconds: int = 300
    auth_key_rotation_seconds: int = 86400
    auth_token_cache_size: int = 10000
    auth_oidc_providers: str = Field(
        default="",
        description="JSON list of {issuer, audience, jwks_url, kind} for external OIDC",
    )
    auth_allowed_algorithms: str = Field(
        default="RS384,ES384,RS256,ES256",
        description="JWT algorithms accepted on access tokens (asymmetric only; none/HS* never)",
    )
    auth_audience: str = Field(
        default="", description="required `aud` of access tokens; empty -> base_url"
    )
    auth_signing_algorithm: str = Field(
        default="ES384", description="algorithm of the built-in issuer's keys: ES384 or RS384"
    )
    auth_assertion_algorithms: str = Field(
        default="RS384,ES384", description="algorithms accepted on client assertions"
    )
    auth_assertion_max_seconds: int = Field(
        default=300, description="a client assertion's exp may be at most this far ahead"
    )
    auth_clock_skew_seconds: int = Field(
        default=30, description="leeway on exp/nbf/iat against other machines' clocks"
    )
    auth_key_passphrase: str | None = Field(
        default=None, description="encrypts the server's private keys stored in Postgres"
    )
    auth_jwks_min_refresh_seconds: int = Field(
        default=30, description="an unknown kid re-fetches an OIDC JWKS at most this often"
    )
    auth_jwks_max_age_seconds: int = Field(
        default=3600, description="an OIDC provider's JWKS is re-fetched after this age"
    )

    # Patient-authorised apps: SMART App Launch (issue 17, smart/).
    smart_login_issuer: str = Field(
        default="",
        description="issuer of the patient OIDC provider (in AUTH_OIDC_PROVIDERS, with its "
        "authorization_url, token_url, client_id) patients sign in with to authorise an app; "
        "empty: the first patient provider that has an authorization_url",
    )
    smart_request_seconds: int = Field(
        default=600, description="time a patient has to sign in and answer the consent page"
    )
    smart_code_seconds: int = Field(default=60, description="lifetime of an authorization code")
    smart_refresh_days: int = Field(default=90, description="lifetime of a refresh token")
    smart_grant_days: int = Field(
        default=365, description="a patient's grant to an app ends after this (Consent period)"
    )

    # Documents (issue 4).
    blob_backend: str = Field(default="postgres", description="postgres | filesystem | s3")
    blob_dir: str = ".data/blobs"
    s3_endpoint_url: str | None = None
    s3_bucket: str = "espace-documents"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    s3_create_bucket: bool = Field(default=False, description="create the bucket at startup")
    blob_sweep_grace_seconds: int = Field(
        default=86400,
        description="an unreferenced blob younger than this is kept (upload-to-commit window)",
    )
    blob_sweep_interval_seconds: int = Field(default=3600, description="sweeper period")
    # Content encryption (issue 18, docs/encryption.md).
    encryption_enabled: bool = Field(
        default=True,
        description="encrypt new document content (AES-256-GCM, per-patient data keys); "
        "false stores new content in clear",
    )
    encryption_kek: SecretStr | None = Field(
        default=None,
        description="key-encryption key(s): base64 of 32 random bytes, comma-separated, the "
        "current one first, previous ones until `espace-api rotate-kek` has run",
    )
    encryption_kek_file: str | None = Field(
        default=None,
        description="file holding the KEK(s), one per line (when ENCRYPTION_KEK is unset); "
        "neither set: a development KEK is generated under DATA_DIR with a warning",
    )
    allowed_content_types: str = (
        "application/pdf,text/plain,image/jpeg,image/png,application/xml,application/fhir+json"
    )
    log_level: str = "INFO"
    log_format: str = Field(default="json", description="json (one object per line) or text")

    # Space lifecycle (issue 9).
    space_opposition_days: int = Field(
        default=42, description="opposition window after the information notice (6 weeks)"
    )
    space_retention_days: int = Field(
        default=3650, description="a closed space is kept this long, then purged (10 years)"
    )
    space_early_deletion_days: int = Field(
        default=30,
        description="a closure with a deletion request is purged after this (at most 90: "
        "the law asks for 3 months)",
    )

    # Privacy (issue 8): durations of access rights.
    care_relationship_days: int = Field(
        default=365, description="an access authorisation lasts at most this long"
    )
    break_the_glass_minutes: int = Field(
        default=60, description="an emergency (break-the-glass) access lasts this long"
    )
    emergency_call_centres: str = Field(
        default="",
        description="FINESS numbers (comma-separated) of the emergency call centres "
        "(SAMU-Centre 15) whose professionals reach a space without a care relationship, "
        "unless the patient opposed it",
    )
    profession_matrix_file: str | None = Field(
        default=None,
        description="the profession matrix (JSON, see access/matrix.py); default: the example "
        "shipped with the package",
    )
    invisible_patient_release_days: int = Field(
        default=30,
        description="a document labelled INVISIBLE_PATIENT is shown to the patient after this "
        "many days unless a professional released it earlier (0: only a professional releases)",
    )
    # Messaging notifications (messaging/worker.py, docs/messaging.md).
    notification_interval_seconds: float = Field(
        default=5.0, description="notification worker period (0: no worker in this process)"
    )
    notification_max_attempts: int = Field(
        default=6, description="delivery attempts before the Subscription is set to error"
    )
    notification_backoff_seconds: float = Field(
        default=30.0, description="wait before the 2nd attempt; doubled for each next one"
    )
    notification_timeout_seconds: float = Field(default=10.0, description="per delivery")
    notification_batch: int = Field(default=100, description="notifications per worker round")
    subscription_allow_http: bool = Field(
        default=False, description="accept http:// rest-hook endpoints (tests, local apps)"
    )

    @property
    def issuer(self) -> str:
        """The issuer of built-in tokens; defaults to the base URL."""
        return self.auth_issuer or self.base_url


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once."""
    return Settings()
