"""The one settings object, read from the environment (prefix-free, documented in README)."""

from functools import lru_cache

from pydantic import Field
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
    db_pool_size: int = 10
    db_max_overflow: int = 10
    max_body_bytes: int = Field(default=20 * 1024 * 1024, description="413 beyond this")
    default_page_size: int = 20
    max_page_size: int = 100

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
    auth_allowed_algorithms: str = "RS384,ES384,RS256,ES256"

    # Documents (issue 4).
    blob_backend: str = Field(default="postgres", description="postgres | filesystem | s3")
    blob_dir: str = ".data/blobs"
    s3_endpoint_url: str | None = None
    s3_bucket: str = "espace-documents"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    allowed_content_types: str = (
        "application/pdf,text/plain,image/jpeg,image/png,application/xml,application/fhir+json"
    )
    log_level: str = "INFO"

    @property
    def issuer(self) -> str:
        """The issuer of built-in tokens; defaults to the base URL."""
        return self.auth_issuer or self.base_url


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once."""
    return Settings()
