using Appliance.BlockDev.Images;
using Appliance.BlockDev.Nbd.Protocol;
using Appliance.Platform.Native;

namespace Appliance.BlockDev.Nbd.Server;

/// <summary>The one place where image and I/O exceptions become NBD error values.</summary>
internal static class NbdErrors
{
    private const int ENOSPC = 28;
    private const int EFBIG = 27;
    private const int EDQUOT = 122;

    /// <summary>
    /// Maps a failure a client should be told about. Anything else (a bug) is not mapped: the caller logs it and
    /// drops the connection rather than pretend it was an I/O error.
    /// </summary>
    public static bool TryMap(Exception e, out NbdError error, out long? offset)
    {
        offset = null;
        error = e switch
        {
            ImageException ie => ie.Kind switch
            {
                ImageErrorKind.NoSpace => NbdError.NoSpc,
                ImageErrorKind.ReadOnly => NbdError.Perm,
                ImageErrorKind.Invalid => NbdError.Inval,
                _ => NbdError.Io,
            },
            PlatformNoSpaceException => NbdError.NoSpc,
            PlatformAccessException => NbdError.Perm,
            PlatformException => NbdError.Io,
            UnauthorizedAccessException => NbdError.Perm,
            // RandomAccess reports other errnos as IOException with the errno in HResult. The spec asks for EDQUOT
            // and EFBIG to be reported as ENOSPC.
            IOException io when io.HResult is ENOSPC or EFBIG or EDQUOT => NbdError.NoSpc,
            IOException => NbdError.Io,
            _ => NbdError.None,
        };
        if (e is ImageException { Offset: { } o })
        {
            offset = o;
        }
        return error != NbdError.None;
    }
}
