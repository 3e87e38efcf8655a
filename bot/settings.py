"""Configuration: one pydantic-settings object, built once in the entry point, passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.text_input import MAX_STORED_CHARS
from core.bandit import BanditConfig, BanditRule
from core.monitor import MonitorConfig, MonitorPolicy
from core.npo import NPOConfig, RetrainConfig, ThresholdMode
from core.scoring import ScoringConfig
from core.utility import UtilityConfig
from retrieval.embeddings import EmbeddingBackend

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Every knob, from ``NPO_*`` environment variables or a ``.env`` file."""

    model_config = SettingsConfigDict(
        env_prefix="NPO_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Field(Path("var"), description="Where the bot keeps its state.")
    playbooks_dir: Path = Field(PROJECT_ROOT / "playbooks", description="Bundled playbooks.")
    policies_dir: Path = Field(
        PROJECT_ROOT / "playbooks" / "policies", description="Rego policies of the SPE."
    )
    seed: int | None = Field(None, description="Seed for the bandit's sampling (None: random).")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL (default: SQLite at data_dir/npo.db)."
    )
    chroma_path: Path | None = Field(
        None, description="Embedded Chroma folder (default: data_dir/chroma)."
    )
    chroma_url: str | None = Field(None, description="Chroma server URL; overrides chroma_path.")
    embedding_model: str | None = Field(
        None, description="sentence-transformers model name or path (default: bundled MiniLM)."
    )

    prior_strength: float = Field(
        0.5, description="What the calibrated prior of a scenario is worth, in confirmations."
    )
    override_weight: float = Field(
        2.0, description="Evidence against a scenario that one override adds, in confirmations."
    )
    override_cost: float = Field(
        3.0, description="Utility cost C of an overridden recommendation (a like is worth 1)."
    )
    miss_cost: float = Field(
        0.5, description="Utility cost M of an abstention whose candidate was then confirmed."
    )
    skip_loss: float = Field(0.1, description="Alignment loss of a skipped decision (λ_skip).")
    arms: Annotated[tuple[float, ...], NoDecode] = Field(
        (0.5, 0.6, 0.7, 0.8, 0.9), description="Threshold arms."
    )
    bandit_discount: float = Field(1.0, description="Discount γ of the bandit (1: none).")
    bandit_rule: BanditRule = Field(
        BanditRule.UTILITY,
        description="utility: every arm learns from every judged candidate; paper: the paper rule.",
    )
    counterfactual: bool = Field(
        False, description="With the paper's rule: credit every arm between τ and the score."
    )
    threshold_mode: ThresholdMode = Field(ThresholdMode.THOMPSON, description="How τ is chosen.")
    fixed_threshold: float = Field(0.7, description="τ when threshold_mode is fixed.")
    retrain_min_gain: float = Field(
        RetrainConfig().min_gain, description="δ: hold-out Brier-score gain a retrain needs."
    )
    retrain_holdout: float = Field(
        0.5, description="Share of the feedback newer than the live model held out."
    )
    monitor_ewma_bound: float = Field(0.35, description="Loss EWMA that asks for a retrain.")
    monitor_min_labels: int = Field(10, description="New labels a retrain needs (hold-out).")
    pause_override_rate: float = Field(0.6, description="Override rate that pauses a playbook.")

    # Learning state and who may change it.
    arms_migration: str = Field(
        "",
        pattern="^(|map|reset)$",
        description="When NPO_ARMS changed: map (nearest stored arm) or reset; empty refuses.",
    )
    playbook_admins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="User ids who may pause or resume playbooks in Slack (empty: nobody)."
    )

    # Input bounds and logging.
    max_incident_chars: int = Field(
        4000,
        ge=1,
        le=MAX_STORED_CHARS,
        description="Characters of an incident's text that extraction and retrieval read.",
    )
    log_level: str = Field(
        "INFO", pattern="(?i)^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$", description="Log level."
    )
    log_format: str = Field(
        "plain", pattern="^(plain|json)$", description="plain (key=value) or json lines."
    )

    # Secrets are SecretStr: reprs, str() and validation errors show '**********'; the value
    # is read with .get_secret_value() only where it is handed to Slack or compared.
    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "NPO_SLACK_BOT_TOKEN")
    )
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "NPO_SLACK_SIGNING_SECRET")
    )
    slack_app_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "NPO_SLACK_APP_TOKEN")
    )
    slack_api_url: str | None = Field(None, description="Slack Web API base URL override.")
    incident_channels: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Channel ids whose messages are incidents."
    )
    feedback_users: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="User ids allowed to give feedback (empty: everyone)."
    )
    override_users: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="User ids allowed to override (empty: all feedback users)."
    )
    feedback_group: str | None = Field(None, description="User group id allowed to give feedback.")
    monitor_interval_minutes: float = Field(15.0, gt=0, description="Meta-monitor tick interval.")
    expire_after_hours: float = Field(
        24.0, gt=0, description="Unanswered recommendations → skipped."
    )
    ops_channel: str | None = Field(None, description="Channel for drift and pause notices.")
    review_channel: str | None = Field(None, description="Channel where submissions are reviewed.")
    reviewer_users: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="User ids who may approve playbooks (empty: anyone but the author)."
    )
    submissions_dir: Path | None = Field(
        None, description="Where approved submissions are written (default: data_dir/playbooks)."
    )
    alert_channel: str | None = Field(None, description="Default channel for Alertmanager alerts.")
    alert_routes: str = Field("", description="label=value:CHANNEL,… routes for alerts.")
    alertmanager_token: SecretStr | None = Field(
        None, description="Bearer token Alertmanager sends."
    )
    llm: str | None = Field(None, description="LangChain chat model, init_chat_model syntax.")
    default_verbosity: str = Field("full", pattern="^(brief|full)$")
    reactions_like: Annotated[tuple[str, ...], NoDecode] = Field(
        ("+1", "thumbsup", "white_check_mark")
    )
    reactions_override: Annotated[tuple[str, ...], NoDecode] = Field(("red_circle", "x", "-1"))
    reactions_neutral: Annotated[tuple[str, ...], NoDecode] = Field(("neutral_face",))

    # Retention (bot/monitoring/retention.py): the tables that grow with traffic, trimmed once
    # a day.
    retention_events_days: float = Field(
        30.0,
        ge=1,
        description="Days processed event ids are kept (at least 1: Slack retries for an hour).",
    )
    retention_audit_days: float = Field(
        365.0, ge=0, description="Days audit entries are kept (0: forever)."
    )
    audit_archive_dir: Path | None = Field(
        None, description="Folder for JSON-lines archives of the audit entries retention deletes."
    )

    @field_validator("retention_audit_days")
    @classmethod
    def _audit_days(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("0 (keep forever) or at least 1 day")
        return value

    # -- HTTP edge (npo serve --http) and the Alertmanager intake ------------------------
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted; larger ones get 413."
    )
    read_timeout_seconds: float = Field(
        10.0, gt=0, description="Time a client has to send one whole request (headers, body)."
    )
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, description="After SIGTERM: time in-flight requests and listeners get."
    )
    http_threads: int = Field(8, ge=1, description="Worker threads handling HTTP requests.")
    http_connection_limit: int = Field(
        1000, ge=1, description="Open connections beyond which new ones wait in the backlog."
    )
    listener_threads: int = Field(5, ge=1, description="Threads running Bolt's listeners.")
    readiness_timeout_seconds: float = Field(
        3.0, gt=0, description="Time each /readyz check may take before it counts as failed."
    )
    alertmanager_allow_anonymous: bool = Field(
        False, description="Accept POST /alertmanager without a token (no NPO_ALERTMANAGER_TOKEN)."
    )
    monitor_policy: MonitorPolicy = Field(
        MonitorConfig().policy,
        description="Meta-monitor M: learned (fitted on past shadow retrains) or rule.",
    )

    # Scenario context (bot/context): sources of facts, and the optional LLM extractor.
    context_config: Path | None = Field(
        None, description="YAML file of the context sources (Prometheus, windows, store)."
    )
    llm_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="Time the LLM extractor may take before it is ignored."
    )
    embedding_backend: EmbeddingBackend = Field(
        EmbeddingBackend.ONNX_INT8,
        description="How the embedding model runs: onnx-int8 (the default: the model "
        "exported offline on first use, int8 weights), onnx (float32) or torch.",
    )
    embedding_cache: Path | None = Field(
        None, description="Where ONNX exports of the model are kept (default: data_dir/models)."
    )

    # -- retrieval calibration -----------------------------------------------------------
    calibration_path: Path | None = Field(
        None,
        description="Fitted similarity calibration (default: data_dir/retrieval-calibration.json).",
    )

    @field_validator("arms", mode="before")
    @classmethod
    def _split_arms(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(x) for x in value.replace(",", " ").split())
        return value

    @field_validator(
        "incident_channels",
        "playbook_admins",
        "reviewer_users",
        "feedback_users",
        "override_users",
        "reactions_like",
        "reactions_override",
        "reactions_neutral",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(x.strip().strip(":") for x in value.split(",") if x.strip())
        return value

    # Approvals and deferrals (bot/service/approvals.py, bot/service/deferrals.py).
    approver_users: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="User ids who may approve a needs-approval recommendation (empty: "
        "everyone allowed to override); never the incident's requester.",
    )
    defer_retry_minutes: float = Field(
        30.0,
        gt=0,
        description="With no maintenance window known, a deferred candidate is judged again "
        "after this many minutes.",
    )
    defer_max_attempts: int = Field(
        5, ge=1, description="Re-evaluations of a deferred candidate before the bot gives up."
    )

    @field_validator("approver_users", mode="before")
    @classmethod
    def _split_approvers(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(x.strip() for x in value.split(",") if x.strip())
        return value

    @property
    def submissions_folder(self) -> Path:
        return self.submissions_dir or self.data_dir / "playbooks"

    @property
    def chroma_folder(self) -> Path:
        return self.chroma_path or self.data_dir / "chroma"

    @property
    def embedding_cache_folder(self) -> Path:
        return self.embedding_cache or self.data_dir / "models"

    @property
    def calibration_file(self) -> Path:
        return self.calibration_path or self.data_dir / "retrieval-calibration.json"

    def npo_config(self) -> NPOConfig:
        """The core's configuration; invalid combinations fail here with the field named."""
        utility = UtilityConfig(override_cost=self.override_cost, miss_cost=self.miss_cost)
        return NPOConfig(
            scoring=ScoringConfig(
                prior_strength=self.prior_strength, override_weight=self.override_weight
            ),
            bandit=BanditConfig(
                arms=self.arms,
                discount=self.bandit_discount,
                counterfactual=self.counterfactual,
                rule=self.bandit_rule,
                start=utility.best_threshold,
            ),
            utility=utility,
            monitor=MonitorConfig(
                ewma_bound=self.monitor_ewma_bound,
                min_labels=self.monitor_min_labels,
                pause_override_rate=self.pause_override_rate,
                policy=self.monitor_policy,
            ),
            retrain=RetrainConfig(
                holdout_fraction=self.retrain_holdout, min_gain=self.retrain_min_gain
            ),
            threshold_mode=self.threshold_mode,
            fixed_threshold=self.fixed_threshold,
            skip_loss=self.skip_loss,
        )
