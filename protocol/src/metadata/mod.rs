//! TUF trust metadata: the signed envelope, the four top-level roles, and the
//! client's trusted state with the update rules that defeat each TUF attack.

pub mod signed;
