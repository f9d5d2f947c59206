//! libipvs `ipvs_strerror`: the message for a failed operation, chosen by
//! (operation, errno class); the first matching row wins.

use rvs_api::{ApiError, ErrorCode};

/// The libipvs call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    AddService,
    UpdateService,
    DelService,
    ZeroService,
    AddDest,
    UpdateDest,
    DelDest,
    StartDaemon,
    StopDaemon,
    GetServices,
    GetDests,
    GetService,
    Flush,
    SetTimeout,
    GetTimeout,
    GetDaemon,
    GetInfo,
    GetConns,
}

const TABLE: &[(Option<Op>, ErrorCode, &str)] = &[
    (
        Some(Op::AddService),
        ErrorCode::Exist,
        "Service already exists",
    ),
    (
        Some(Op::AddService),
        ErrorCode::NoEnt,
        "Scheduler or persistence engine not found",
    ),
    (Some(Op::UpdateService), ErrorCode::Srch, "No such service"),
    (
        Some(Op::UpdateService),
        ErrorCode::NoEnt,
        "Scheduler or persistence engine not found",
    ),
    (Some(Op::DelService), ErrorCode::Srch, "No such service"),
    (Some(Op::ZeroService), ErrorCode::Srch, "No such service"),
    (Some(Op::AddDest), ErrorCode::Srch, "Service not defined"),
    (
        Some(Op::AddDest),
        ErrorCode::Exist,
        "Destination already exists",
    ),
    (Some(Op::UpdateDest), ErrorCode::Srch, "Service not defined"),
    (
        Some(Op::UpdateDest),
        ErrorCode::NoEnt,
        "No such destination",
    ),
    (Some(Op::DelDest), ErrorCode::Srch, "Service not defined"),
    (Some(Op::DelDest), ErrorCode::NoEnt, "No such destination"),
    (
        Some(Op::StartDaemon),
        ErrorCode::Exist,
        "Daemon has already run",
    ),
    (
        Some(Op::StopDaemon),
        ErrorCode::Srch,
        "No daemon is running",
    ),
    (Some(Op::GetServices), ErrorCode::Srch, "No such service"),
    (Some(Op::GetDests), ErrorCode::Srch, "No such service"),
    (Some(Op::GetService), ErrorCode::Srch, "No such service"),
    (
        None,
        ErrorCode::Perm,
        "Permission denied (you must be root)",
    ),
    (
        None,
        ErrorCode::Inval,
        "Invalid operation.  Possibly wrong module version, address not unicast, ...",
    ),
    (None, ErrorCode::NoMem, "Memory allocation problem"),
    (
        None,
        ErrorCode::OpNotSupp,
        "Operation not supported with IPv6",
    ),
    (
        None,
        ErrorCode::AfNoSupport,
        "Operation not supported with specified address family",
    ),
];

/// glibc `strerror` text for the errno behind an [`ErrorCode`].
fn strerror(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::Exist => "File exists",
        ErrorCode::Srch => "No such process",
        ErrorCode::NoEnt => "No such file or directory",
        ErrorCode::Inval => "Invalid argument",
        ErrorCode::Perm => "Operation not permitted",
        ErrorCode::NoMem => "Cannot allocate memory",
        ErrorCode::AfNoSupport => "Address family not supported by protocol",
        ErrorCode::OpNotSupp => "Operation not supported",
        ErrorCode::BadRequest => return None,
    })
}

/// The message ipvsadm prints for `op` failing with `e`. A
/// [`ErrorCode::BadRequest`] (not an errno) prints rvsd's own text.
pub fn message(op: Op, e: &ApiError) -> String {
    for (o, code, msg) in TABLE {
        if (o.is_none() || *o == Some(op)) && *code == e.code {
            return (*msg).to_string();
        }
    }
    match strerror(e.code) {
        Some(s) => s.to_string(),
        None => format!("rvsd: {}", e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins() {
        let e = |c| ApiError::new(c, "x");
        assert_eq!(
            message(Op::AddService, &e(ErrorCode::Exist)),
            "Service already exists"
        );
        assert_eq!(
            message(Op::AddDest, &e(ErrorCode::Srch)),
            "Service not defined"
        );
        assert_eq!(message(Op::Flush, &e(ErrorCode::Exist)), "File exists");
        assert_eq!(
            message(Op::AddDest, &e(ErrorCode::Inval)),
            "Invalid operation.  Possibly wrong module version, address not unicast, ..."
        );
        assert_eq!(message(Op::Flush, &e(ErrorCode::BadRequest)), "rvsd: x");
    }
}
