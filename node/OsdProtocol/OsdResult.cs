namespace Appliance.Osd.Protocol;

/// <summary>
/// Result codes of OSD operations: 0 or a positive count on success, a negative errno (Linux numbering, as Ceph's
/// wire protocol) on failure. One table of their meanings, used by the OSD, the client and the CLI.
/// </summary>
public static class OsdResult
{
    public const int Ok = 0;
    public const int NotPermitted = -1;        // EPERM
    public const int NotFound = -2;            // ENOENT
    public const int TryAgain = -11;           // EAGAIN: not the primary for this map, or the PG is not active yet
    public const int AccessDenied = -13;       // EACCES
    public const int Exists = -17;             // EEXIST
    public const int InvalidArgument = -22;    // EINVAL
    public const int TooLarge = -27;           // EFBIG
    public const int NoSpace = -28;            // ENOSPC
    public const int OutOfRange = -34;         // ERANGE
    public const int NameTooLong = -36;        // ENAMETOOLONG
    public const int NotSupported = -95;       // EOPNOTSUPP
    public const int Blocklisted = -108;       // ESHUTDOWN, as Ceph's EBLOCKLISTED
    public const int TimedOut = -110;          // ETIMEDOUT
    public const int QuotaExceeded = -122;     // EDQUOT
    public const int Canceled = -125;          // ECANCELED: a guard (assert version, compare xattr) failed
    public const int IoError = -5;             // EIO: the store reported corruption or a device error

    public static string Describe(int result) => result switch
    {
        >= 0 => "ok",
        NotPermitted => "operation not permitted",
        NotFound => "no such object",
        TryAgain => "try again (map changed or PG not active)",
        AccessDenied => "permission denied",
        Exists => "object exists",
        InvalidArgument => "invalid argument",
        TooLarge => "object too large",
        NoSpace => "no space left (cluster full)",
        OutOfRange => "out of range",
        NameTooLong => "name too long",
        NotSupported => "operation not supported",
        Blocklisted => "client is blocklisted",
        TimedOut => "timed out",
        QuotaExceeded => "pool quota exceeded",
        Canceled => "guard failed",
        IoError => "I/O error",
        _ => $"error {-result}",
    };
}
