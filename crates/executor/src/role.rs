//! Executor role detection.

use spate_core::protocol::env;

/// Set by a driver in the environment of the executor processes it starts.
pub const EXECUTOR_ENV: &str = env::DRIVER;

/// What this process was started as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A user program: the driver.
    Driver,
    /// An executor started by a driver; the value is the driver's control address.
    Executor(String),
}

/// Read the role from an environment lookup (a function, so tests need not touch the
/// process environment).
pub fn role_from(get: impl Fn(&str) -> Option<String>) -> Role {
    match get(EXECUTOR_ENV) {
        Some(v) if !v.is_empty() => Role::Executor(v),
        _ => Role::Driver,
    }
}

/// The role of this process.
pub fn current_role() -> Role {
    role_from(|k| std::env::var(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_unless_the_variable_is_set() {
        assert_eq!(role_from(|_| None), Role::Driver);
        assert_eq!(role_from(|_| Some(String::new())), Role::Driver);
        assert_eq!(
            role_from(|_| Some("127.0.0.1:7000".into())),
            Role::Executor("127.0.0.1:7000".into())
        );
    }
}
