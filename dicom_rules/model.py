"""The rule-file language as frozen pydantic models. The JSON Schema for editors is generated from these.

Shape checks live here (types, enums, ranges, regexes, CIDRs, keywords, one action per route). Checks that
need the whole file (destinations referenced, catch-all, unreachable routes, VR of replacement values,
conflicting overrides) live in :mod:`dicom_rules.checks`, so that every problem is reported in one pass.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    Tag,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from anonymizer.plans import (
    NoFaceAction,
    NoPatientIdAction,
    PairingScope,
    PixelMode,
    ProfileOption,
    Region,
    TagAction,
    TextAction,
)
from dicom_rules.tags import resolve, resolve_path, rule_error

CALLING_AE = "calling_ae"
ENGINE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DEFAULT_OPTIONS = (ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES, ProfileOption.CLEAN_DESCRIPTORS)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


def _check_cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        hint = "write an address block such as 10.20.0.0/16 or a single address such as 10.20.1.5"
        if "host bits set" in str(exc):
            hint = f"did you mean {ipaddress.ip_network(text, strict=False)}?"
        raise rule_error("bad_cidr", f"{text!r} is not a network address (CIDR)", hint) from None
    return text


def _check_regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise rule_error(
            "bad_regex",
            f"invalid regular expression {text!r}: {exc}",
            "regexes use Python syntax; quote them in YAML with single quotes",
        ) from None
    return text


def _check_tag(text: str) -> str:
    resolve(text)
    return text


def _check_match_key(text: str) -> str:
    if text != CALLING_AE:
        resolve_path(text)
    return text


AeTitle = Annotated[
    str, StringConstraints(min_length=1, max_length=16, pattern=r"^[^\\\x00-\x1f]*[^ \\\x00-\x1f]")
]
Cidr = Annotated[str, AfterValidator(_check_cidr)]
Regex = Annotated[str, AfterValidator(_check_regex)]
TagKey = Annotated[str, AfterValidator(_check_tag)]
MatchKey = Annotated[str, AfterValidator(_check_match_key)]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
EngineName = Annotated[str, StringConstraints(pattern=ENGINE_PATTERN)]
Scalar = str | int | float


class SourceModel(_Model):
    """A sender allowed to store to the gateway: its calling AE title, optionally only from some networks."""

    ae_title: AeTitle
    networks: tuple[Cidr, ...] = Field(default=(), description="CIDRs; empty means any address")


class TlsModel(_Model):
    certificate: str | None = Field(default=None, description="PEM certificate we present")
    private_key: str | None = Field(default=None, description="PEM private key of that certificate")
    ca_bundle: str | None = Field(default=None, description="PEM CA bundle that signs the peer")
    require_peer_certificate: bool = True

    @model_validator(mode="after")
    def _pair(self) -> TlsModel:
        if (self.certificate is None) != (self.private_key is None):
            raise rule_error(
                "tls_pair",
                "certificate and private_key must be given together",
                "add the missing one, or remove both to connect without a client certificate",
            )
        if self.require_peer_certificate and self.ca_bundle is None:
            raise rule_error(
                "tls_ca",
                "require_peer_certificate needs a ca_bundle to check the peer against",
                "add ca_bundle: path/to/ca.pem, or set require_peer_certificate: false",
            )
        return self


class DicomDestinationModel(_Model):
    """A DICOM peer (research PACS) that receives C-STORE."""

    ae_title: AeTitle
    host: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)]
    tls: TlsModel | None = None


class FolderDestinationModel(_Model):
    """A folder that receives DICOM files; relative paths resolve against the gateway data dir."""

    folder: Annotated[str, StringConstraints(min_length=1)]


class HttpsTlsModel(_Model):
    """HTTPS to a DICOMweb peer: the system CAs unless ``ca_bundle``; a client certificate optional."""

    ca_bundle: str | None = Field(default=None, description="PEM CA bundle; default: the system's CAs")
    certificate: str | None = Field(default=None, description="PEM client certificate we present")
    private_key: str | None = Field(default=None, description="PEM private key of that certificate")

    @model_validator(mode="after")
    def _pair(self) -> HttpsTlsModel:
        if (self.certificate is None) != (self.private_key is None):
            raise rule_error(
                "tls_pair",
                "certificate and private_key must be given together",
                "add the missing one, or remove both to connect without a client certificate",
            )
        return self


class BasicAuthModel(_Model):
    username: Annotated[str, StringConstraints(min_length=1)]
    password_file: Annotated[str, StringConstraints(min_length=1)] = Field(
        description="file holding the password (never the password itself)"
    )


class OAuth2Model(_Model):
    """OAuth2 client-credentials grant (RFC 6749 §4.4); the secret is read from a file."""

    token_url: Annotated[str, StringConstraints(pattern=r"^https?://")]
    client_id: Annotated[str, StringConstraints(min_length=1)]
    client_secret_file: Annotated[str, StringConstraints(min_length=1)]
    scope: str = ""


class WebAuthModel(_Model):
    """At most one way to authenticate; every secret lives in a file, never in the rule file."""

    basic: BasicAuthModel | None = None
    bearer_token_file: str | None = Field(default=None, description="file holding a bearer token")
    oauth2: OAuth2Model | None = None

    @model_validator(mode="after")
    def _one(self) -> WebAuthModel:
        given = [k for k in ("basic", "bearer_token_file", "oauth2") if getattr(self, k) is not None]
        if len(given) > 1:
            raise rule_error(
                "conflict",
                f"auth takes one of basic, bearer_token_file or oauth2 (has {' and '.join(given)})",
                "keep the one the archive expects",
            )
        return self


def _no_credentials_in_url(url: str) -> str:
    if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
        raise rule_error(
            "unsafe",
            "the URL carries credentials (user:password@host)",
            "remove them and use auth: {basic: {username: …, password_file: …}}",
        )
    return url


class DicomWebModel(_Model):
    url: Annotated[
        str, StringConstraints(pattern=r"^https?://[^/\s]+"), AfterValidator(_no_credentials_in_url)
    ] = Field(description="DICOMweb base URL (STOW-RS posts to URL/studies)")
    tls: HttpsTlsModel | None = None
    auth: WebAuthModel | None = None
    timeout_s: Annotated[float, Field(gt=0)] = 120.0


class DicomWebDestinationModel(_Model):
    """A DICOMweb archive that receives STOW-RS (Orthanc, dcm4chee, a cloud healthcare API)."""

    dicomweb: DicomWebModel


def _destination_kind(value: Any) -> str:
    if isinstance(value, dict):
        return next((k for k in ("folder", "dicomweb") if k in value), "dicom")
    if isinstance(value, FolderDestinationModel):
        return "folder"
    return "dicomweb" if isinstance(value, DicomWebDestinationModel) else "dicom"


DestinationModel = Annotated[
    Annotated[DicomDestinationModel, Tag("dicom")]
    | Annotated[FolderDestinationModel, Tag("folder")]
    | Annotated[DicomWebDestinationModel, Tag("dicomweb")],
    Discriminator(_destination_kind),
]


class Condition(_Model):
    """One attribute test; every operator given must hold. A plain value means equals, a list one_of.

    Multi-valued attributes match when any single value (or the whole backslash-joined value) matches.
    ``regex`` searches anywhere in the value (anchor with ^…$). Numeric operators parse the value as a number.
    """

    equals: Scalar | None = None
    one_of: tuple[Scalar, ...] | None = None
    regex: Regex | None = None
    present: bool | None = None
    absent: bool | None = None
    lt: float | None = None
    le: float | None = None
    gt: float | None = None
    ge: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"one_of": value}
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return {"equals": value}
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        scalar = {"type": ["string", "number"]}
        shorthand = [
            {**scalar, "description": "equals"},
            {"type": "array", "items": scalar, "description": "one_of"},
        ]
        return {"anyOf": [*shorthand, handler(schema)]}

    @model_validator(mode="after")
    def _consistent(self) -> Condition:
        if not self.model_fields_set:
            raise rule_error(
                "empty_condition",
                "a condition needs at least one operator",
                "use equals, one_of, regex, present, absent, lt, le, gt or ge",
            )
        if self.present is not None and self.absent is not None and self.present == self.absent:
            raise rule_error("conflict", "present and absent contradict each other", "keep one of them")
        return self

    @property
    def numeric(self) -> bool:
        return any(v is not None for v in (self.lt, self.le, self.gt, self.ge))


class KeepTextModel(_Model):
    """Text that is clinical content, not identity (a ruler's numbers and units): left in the photo when
    OCR's whole reading of the line matches ``regex`` (Python ``re.fullmatch``)."""

    regex: Regex


class VerifyModel(_Model):
    """Fail-closed verification of every anonymized face, beyond the fixed same-person threshold."""

    population_rank: Annotated[int, Field(ge=0, le=20)] = Field(
        default=1,
        description="linkage test: at least this many real reference faces (the donor bank) must be nearer "
        "to the output than the patient's own photo, else quarantine (output-links-to-input); 0 turns the "
        "test OFF: outputs may then be linked back to their patient",
    )


class PixelsModel(_Model):
    """How the pixels of a route are anonymized."""

    mode: PixelMode = PixelMode.ANONYMIZE
    engine: EngineName | None = Field(default=None, description="registered engine; omitted = gateway config")
    preserve: tuple[Region, ...] = Field(
        default=(), description="clinical regions kept exactly as photographed"
    )
    pairing: PairingScope = PairingScope.PATIENT
    no_face: NoFaceAction = NoFaceAction.QUARANTINE
    no_patient_id: NoPatientIdAction = Field(
        default=NoPatientIdAction.PER_STUDY,
        description="photos without PatientID: per_study (own identity per study) or quarantine",
    )
    fallback_engine: EngineName | None = None
    jpeg_quality: Annotated[int, Field(ge=50, le=100)] = 95
    options: dict[str, Scalar | bool] = Field(
        default_factory=dict, description="engine options, e.g. checkpoint"
    )
    text: TextAction = Field(
        default=TextAction.REDACT,
        description="text in the pixels (name cards, wristbands, date stamps): redact (inpaint, check "
        "again, else quarantine) | quarantine | keep (unchecked: BurnedInAnnotation YES)",
    )
    keep_text: KeepTextModel | None = Field(
        default=None, description="allow-list of clinical text, e.g. {regex: '^[0-9 .,]*(mm|cm)?$'}"
    )
    verify: VerifyModel = Field(
        default_factory=VerifyModel, description="verification options, e.g. {population_rank: 1}"
    )

    @model_validator(mode="after")
    def _consistent(self) -> PixelsModel:
        if self.keep_text is not None and self.text == TextAction.KEEP:
            raise rule_error(
                "conflict",
                "keep_text has no effect with text: keep (no text is checked)",
                "remove keep_text, or use text: redact",
            )
        if len(set(self.preserve)) != len(self.preserve):
            raise rule_error("conflict", "a region is listed twice in preserve", "list each region once")
        if Region.FACE in self.preserve:
            raise rule_error(
                "unsafe",
                "preserving the whole face leaves the person identifiable",
                "preserve mouth, nose, eyes or brows; use mode: passthrough for non-face images",
            )
        if self.preserve and self.mode != PixelMode.ANONYMIZE:
            raise rule_error(
                "conflict",
                f"preserve has no effect with mode {self.mode.value}",
                "remove preserve, or use mode: anonymize",
            )
        if self.fallback_engine is not None and self.fallback_engine == self.engine:
            raise rule_error("conflict", "fallback_engine is the same as engine", "name a different engine")
        if "checkpoint" in self.options and self.engine != "vera":
            raise rule_error("conflict", "option checkpoint is only used by engine vera", "set engine: vera")
        return self


class OverrideModel(_Model):
    """One per-tag action. Written as a bare action (``keep``) or a mapping (``{replace: "040Y"}``)."""

    action: TagAction
    value: str | None = Field(default=None, description="the replacement, for action replace")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"action": value}
        if isinstance(value, dict) and len(value) == 1 and "replace" in value:
            raw = value["replace"]
            return {"action": "replace", "value": raw if isinstance(raw, str) else str(raw)}
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        bare = {"enum": [a.value for a in TagAction if a != TagAction.REPLACE]}
        replace = {
            "type": "object",
            "properties": {"replace": {"type": ["string", "number"]}},
            "required": ["replace"],
            "additionalProperties": False,
        }
        return {"anyOf": [bare, replace, handler(schema)]}

    @model_validator(mode="after")
    def _consistent(self) -> OverrideModel:
        if (self.action == TagAction.REPLACE) != (self.value is not None):
            raise rule_error(
                "conflict",
                "only replace takes a value, and replace needs one",
                "write {replace: VALUE}, or a bare action such as keep",
            )
        return self


class MetadataModel(_Model):
    """Header de-identification: the PS3.15 Basic Profile, its options, and per-tag overrides."""

    profile: Literal["basic"] = "basic"
    options: tuple[ProfileOption, ...] = DEFAULT_OPTIONS
    strict: bool = Field(default=False, description="remove every text attribute not kept explicitly")
    shift_time: bool = False
    allow_burned_in_annotation: bool = False
    safe_private: tuple[str, ...] = Field(default=(), description='entries like 0009,"ACME 1.0",10')
    overrides: dict[TagKey, OverrideModel] = Field(
        default_factory=dict,
        description="DICOM keyword or tag → keep | remove | empty | hash | shift-date | {replace: V}",
    )
    strict_keep: tuple[TagKey, ...] = Field(default=(), description="attributes strict mode keeps as well")
    clean_vocabulary: tuple[str, ...] = Field(default=(), description="extra words Clean Descriptors keeps")
    date_offset_min_days: int = Field(default=-365, description="per-patient date shift range, inclusive")
    date_offset_max_days: int = -30
    jpeg_full_scan: bool = Field(
        default=False, description="scan JPEG entropy data for hidden markers (slower)"
    )
    allow_identifiers: bool = Field(
        default=False, description="allow keep on direct identifiers (PatientName…)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> MetadataModel:
        if self.date_offset_min_days > self.date_offset_max_days:
            raise rule_error(
                "conflict",
                "date_offset_min_days is above date_offset_max_days",
                "the range is inclusive, e.g. -365 … -30",
            )
        opts = set(self.options)
        if len(opts) != len(self.options):
            raise rule_error("conflict", "an option is listed twice", "list each option once")
        dates = {
            ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES,
            ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
        }
        if dates <= opts:
            raise rule_error(
                "conflict",
                "full dates and modified dates exclude each other",
                "keep retain_longitudinal_modified_dates (dates shifted per patient)",
            )
        if self.safe_private and ProfileOption.RETAIN_SAFE_PRIVATE not in opts:
            raise rule_error(
                "conflict",
                "safe_private is listed but retain_safe_private is not enabled",
                "add retain_safe_private to options, or remove safe_private",
            )
        changed = {resolve(k).tag for k, o in self.overrides.items() if o.action != TagAction.KEEP}
        clash = [k for k in self.strict_keep if resolve(k).tag in changed]
        if clash:
            raise rule_error(
                "conflict",
                f"{clash[0]} is in strict_keep but an override changes it",
                "keep it in one place: either strict_keep or an override",
            )
        return self


class RouteModel(_Model):
    """First match wins. No ``match`` (or an empty one) is a catch-all. Exactly one of to/quarantine/drop."""

    name: Name
    match: dict[MatchKey, Condition] = Field(
        default_factory=dict,
        description="keyword, tag, Sequence.Keyword path or calling_ae → condition; all must hold; "
        "empty = catch-all",
    )
    pixels: PixelsModel = Field(default_factory=PixelsModel)
    metadata: MetadataModel = Field(default_factory=MetadataModel)
    to: Name | None = Field(default=None, description="destination name")
    quarantine: str | None = Field(default=None, description="reason; the study is quarantined")
    drop: str | None = Field(default=None, description="reason; the study is dropped")

    @model_validator(mode="after")
    def _one_action(self) -> RouteModel:
        given = [k for k in ("to", "quarantine", "drop") if getattr(self, k) is not None]
        if len(given) != 1:
            what = " and ".join(given) if given else "none of them"
            raise rule_error(
                "conflict",
                f"a route needs exactly one of to, quarantine or drop (has {what})",
                "write to: DESTINATION, or quarantine: REASON, or drop: REASON",
            )
        return self

    @property
    def is_catch_all(self) -> bool:
        return not self.match


class RulesFile(_Model):
    """A VerA Gateway rule file. Included files add sources, destinations and routes (theirs first)."""

    model_config = ConfigDict(title="VerA Gateway rules", json_schema_extra={"$id": "vera-gateway-rules"})

    version: Literal[1] = 1
    name: Name | None = Field(default=None, description="rule-set name; defaults to the file name")
    description: str = ""
    include: str | tuple[str, ...] = Field(default=(), description="files relative to this one")
    sources: tuple[SourceModel, ...] = Field(default=(), description="allowed senders; empty allows any")
    destinations: dict[Name, DestinationModel] = Field(default_factory=dict)
    routes: tuple[RouteModel, ...] = Field(description="ordered, first match wins; the last is a catch-all")


def all_field_names() -> frozenset[str]:
    """Every key the language knows, for 'did you mean' hints on unknown keys."""
    models: tuple[type[BaseModel], ...] = (
        SourceModel,
        TlsModel,
        DicomDestinationModel,
        FolderDestinationModel,
        DicomWebDestinationModel,
        DicomWebModel,
        HttpsTlsModel,
        WebAuthModel,
        BasicAuthModel,
        OAuth2Model,
        Condition,
        PixelsModel,
        VerifyModel,
        KeepTextModel,
        OverrideModel,
        MetadataModel,
        RouteModel,
        RulesFile,
    )
    return frozenset(name for m in models for name in m.model_fields)
