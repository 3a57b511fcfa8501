//! TUF trust metadata: the signed envelope, the four top-level roles, and the
//! client's trusted state with the update rules that defeat each TUF attack.

pub mod build;
pub mod root;
pub mod signed;
pub mod snapshot;
pub mod targets;
pub mod timestamp;
pub mod trust;

pub use build::{
    new_root, release_target, rotate_root, sign_document, BuildError, Expiries, OperatorChange,
    Repository, RoleSigners, RoleSpec, RootChanges, RootSpec,
};
pub use root::{
    read_metadata, FormatError, Metadata, ReadError, RoleName, Root, RootError, RootKeySet,
    WaveguardRoles, SPEC_VERSION,
};
pub use snapshot::{MetaFile, Snapshot, SnapshotError, SnapshotFiles};
pub use targets::{Targets, TargetsError};
pub use timestamp::{TimestampError, TimestampFiles, TimestampMeta};
pub use trust::{
    BundleError, BundleOutcome, StoredTrust, StoredTrustError, TrustVersions, TrustedState, Update,
};
