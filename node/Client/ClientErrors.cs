using Appliance.Maps;
using Appliance.Osd.Protocol;

namespace Appliance.Client;

/// <summary>The base of every error the cluster client reports.</summary>
public class ClusterClientException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>No osdmap could be had from the monitors within the connect timeout.</summary>
public sealed class ClusterUnavailableException(string message, Exception? inner = null) : ClusterClientException(message, inner);

/// <summary>The pool is not in the client's osdmap (never created, or removed).</summary>
public sealed class PoolNotFoundException(string pool) : ClusterClientException($"pool '{pool}' does not exist")
{
    public string Pool { get; } = pool;
}

/// <summary>
/// An operation failed: <see cref="Result"/> is the OSD's result code (negative errno, <see cref="OsdResult"/>), or
/// <see cref="OsdResult.TimedOut"/> for a request past its deadline. <see cref="Pg"/> and <see cref="Osd"/> say
/// where it went last (Osd is -1 when no OSD of the PG was up).
/// </summary>
public class OsdOperationException(int result, string message, string objectName, PgId pg, int osd, OsdOpReply? reply)
    : ClusterClientException(message)
{
    public int Result { get; } = result;
    public string ObjectName { get; } = objectName;
    public PgId Pg { get; } = pg;
    public int Osd { get; } = osd;
    /// <summary>The OSD's reply, when there was one (a timeout has none).</summary>
    public OsdOpReply? Reply { get; } = reply;
}

public sealed class ObjectNotFoundException(string message, string objectName, PgId pg, int osd, OsdOpReply? reply)
    : OsdOperationException(OsdResult.NotFound, message, objectName, pg, osd, reply);

public sealed class ObjectExistsException(string message, string objectName, PgId pg, int osd, OsdOpReply? reply)
    : OsdOperationException(OsdResult.Exists, message, objectName, pg, osd, reply);

/// <summary>EACCES or EPERM: the client's capabilities do not allow the operation.</summary>
public sealed class PermissionDeniedException(int result, string message, string objectName, PgId pg, int osd, OsdOpReply? reply)
    : OsdOperationException(result, message, objectName, pg, osd, reply);

public sealed class QuotaExceededException(string message, string objectName, PgId pg, int osd, OsdOpReply? reply)
    : OsdOperationException(OsdResult.QuotaExceeded, message, objectName, pg, osd, reply);

/// <summary>ENOSPC: an OSD of the PG is past the full ratio; nothing was written.</summary>
public sealed class ClusterFullException(string message, string objectName, PgId pg, int osd, OsdOpReply? reply)
    : OsdOperationException(OsdResult.NoSpace, message, objectName, pg, osd, reply);

/// <summary>This client instance is in the osdmap's blocklist: OSDs refuse everything it sends.</summary>
public sealed class BlocklistedException(string message, string objectName, PgId pg, int osd, OsdOpReply? reply)
    : OsdOperationException(OsdResult.Blocklisted, message, objectName, pg, osd, reply);

/// <summary>ECANCELED: a guard (assert version, compare xattr) failed; the request changed nothing.</summary>
public sealed class GuardFailedException(string message, string objectName, PgId pg, int osd, OsdOpReply? reply)
    : OsdOperationException(OsdResult.Canceled, message, objectName, pg, osd, reply);

/// <summary>EINVAL, ERANGE, ENAMETOOLONG, EFBIG, EOPNOTSUPP: the request is wrong as it stands; resending cannot help.</summary>
public sealed class InvalidRequestException(int result, string message, string objectName, PgId pg, int osd, OsdOpReply? reply)
    : OsdOperationException(result, message, objectName, pg, osd, reply);

/// <summary>EIO: the OSD's store reported corruption or a device error.</summary>
public sealed class ObjectIoException(string message, string objectName, PgId pg, int osd, OsdOpReply? reply)
    : OsdOperationException(OsdResult.IoError, message, objectName, pg, osd, reply);

/// <summary>A request did not complete before its deadline. The message names the PG and the OSD (or the map epoch)
/// it last waited on.</summary>
public sealed class OsdRequestTimeoutException(string message, string objectName, PgId pg, int osd)
    : OsdOperationException(OsdResult.TimedOut, message, objectName, pg, osd, null);

/// <summary>An OSD sent a reply the client cannot read (a bug or a version mismatch, never retried).</summary>
public sealed class OsdProtocolException(string message, Exception? inner = null) : ClusterClientException(message, inner);

/// <summary>The one mapping from OSD result codes to the client's exceptions.</summary>
public static class OsdErrors
{
    /// <summary>The exception for a failed reply (<paramref name="result"/> negative, never TryAgain: that is retried).</summary>
    public static OsdOperationException From(int result, string detail, string objectName, PgId pg, int osd, OsdOpReply? reply)
    {
        var what = objectName.Length > 0 ? $"'{objectName}'" : "the PG listing";
        var described = OsdResult.Describe(result);
        var message = $"{what} in PG {pg} on osd.{osd}: {described}" + (detail.Length > 0 && detail != described ? $" ({detail})" : "");
        return result switch
        {
            OsdResult.NotFound => new ObjectNotFoundException(message, objectName, pg, osd, reply),
            OsdResult.Exists => new ObjectExistsException(message, objectName, pg, osd, reply),
            OsdResult.AccessDenied or OsdResult.NotPermitted => new PermissionDeniedException(result, message, objectName, pg, osd, reply),
            OsdResult.QuotaExceeded => new QuotaExceededException(message, objectName, pg, osd, reply),
            OsdResult.NoSpace => new ClusterFullException(message, objectName, pg, osd, reply),
            OsdResult.Blocklisted => new BlocklistedException(message, objectName, pg, osd, reply),
            OsdResult.Canceled => new GuardFailedException(message, objectName, pg, osd, reply),
            OsdResult.InvalidArgument or OsdResult.OutOfRange or OsdResult.NameTooLong or OsdResult.TooLarge or OsdResult.NotSupported =>
                new InvalidRequestException(result, message, objectName, pg, osd, reply),
            OsdResult.IoError => new ObjectIoException(message, objectName, pg, osd, reply),
            _ => new OsdOperationException(result, message, objectName, pg, osd, reply),
        };
    }

    /// <summary>A short name of the error kind, for metrics tags.</summary>
    public static string Kind(int result) => result switch
    {
        OsdResult.NotFound => "not_found",
        OsdResult.Exists => "exists",
        OsdResult.AccessDenied or OsdResult.NotPermitted => "permission",
        OsdResult.QuotaExceeded => "quota",
        OsdResult.NoSpace => "full",
        OsdResult.Blocklisted => "blocklisted",
        OsdResult.Canceled => "guard",
        OsdResult.TimedOut => "timeout",
        OsdResult.IoError => "io",
        OsdResult.InvalidArgument or OsdResult.OutOfRange or OsdResult.NameTooLong or OsdResult.TooLarge or OsdResult.NotSupported => "invalid",
        _ => "other",
    };
}
