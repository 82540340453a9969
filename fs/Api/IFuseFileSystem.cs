namespace Appliance.Fs.Api;

/// <summary>
/// An inode-level filesystem served by a <see cref="Session.FuseSession"/>. Inodes are named by node ids the
/// filesystem chooses (1 is the root). The kernel holds a lookup count on every node id the filesystem handed out
/// in an <see cref="Entry"/> and gives it back through <see cref="Forget"/>; a node may be dropped only when its
/// lookup count is 0, it has no links and no open handles.
/// <para>
/// Rules: every method returns a result or an errno (throwing <see cref="FsException"/> is the same as returning
/// its errno; any other exception is a bug, logged and answered with EIO). Methods must not block the calling
/// thread: a slow backend returns a pending task. Each call is bounded by the session's operation timeout; when it
/// passes (or the caller is interrupted) the call's CancellationToken is cancelled and the kernel is answered ETIMEDOUT
/// (or EINTR) at once, whatever the task does later. If a call that created lookups completes after that, the
/// session gives those lookups back through <see cref="Forget"/> itself.
/// </para>
/// <para>With default_permissions (the usual mount option) the kernel checks permissions against the attributes
/// before calling; <see cref="AccessAsync"/> is then only used for access(2) without it.</para>
/// </summary>
public interface IFuseFileSystem
{
    ValueTask<FsResult<Entry>> LookupAsync(FuseContext ctx, ulong parent, string name, CancellationToken ct);

    /// <summary>The kernel dropped <paramref name="nlookup"/> lookups of a node. Never answered; must not block.</summary>
    void Forget(ulong nodeId, ulong nlookup);

    ValueTask<FsResult<AttrReply>> GetAttrAsync(FuseContext ctx, ulong nodeId, ulong? handle, CancellationToken ct);

    ValueTask<FsResult<AttrReply>> SetAttrAsync(FuseContext ctx, ulong nodeId, SetAttrRequest request, CancellationToken ct);

    ValueTask<FsResult<string>> ReadLinkAsync(FuseContext ctx, ulong nodeId, CancellationToken ct);

    ValueTask<FsResult<Entry>> SymlinkAsync(FuseContext ctx, ulong parent, string name, string target, CancellationToken ct);

    /// <summary>mknod: <paramref name="mode"/> includes the file type; the umask is already applied.</summary>
    ValueTask<FsResult<Entry>> MkNodAsync(FuseContext ctx, ulong parent, string name, uint mode, uint rdev, CancellationToken ct);

    ValueTask<FsResult<Entry>> MkDirAsync(FuseContext ctx, ulong parent, string name, uint mode, CancellationToken ct);

    ValueTask<FsError> UnlinkAsync(FuseContext ctx, ulong parent, string name, CancellationToken ct);

    ValueTask<FsError> RmDirAsync(FuseContext ctx, ulong parent, string name, CancellationToken ct);

    ValueTask<FsError> RenameAsync(FuseContext ctx, ulong parent, string name, ulong newParent, string newName, RenameFlags flags, CancellationToken ct);

    ValueTask<FsResult<Entry>> LinkAsync(FuseContext ctx, ulong nodeId, ulong newParent, string newName, CancellationToken ct);

    /// <summary>open: <paramref name="flags"/> are the open(2) flags; O_TRUNC must be honoured (ATOMIC_O_TRUNC).</summary>
    ValueTask<FsResult<OpenReply>> OpenAsync(FuseContext ctx, ulong nodeId, int flags, CancellationToken ct);

    /// <summary>Creates and opens a regular file; <paramref name="mode"/> includes S_IFREG, umask applied.</summary>
    ValueTask<FsResult<CreateReply>> CreateAsync(FuseContext ctx, ulong parent, string name, uint mode, int flags, CancellationToken ct);

    /// <summary>Reads into <paramref name="destination"/>; returns the bytes read (fewer only at end of file).</summary>
    ValueTask<FsResult<int>> ReadAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, Memory<byte> destination, CancellationToken ct);

    /// <summary>Writes all of <paramref name="data"/> (valid only until the task completes); returns the bytes written.</summary>
    ValueTask<FsResult<int>> WriteAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, ReadOnlyMemory<byte> data, CancellationToken ct);

    ValueTask<FsError> FlushAsync(FuseContext ctx, ulong nodeId, ulong handle, CancellationToken ct);

    /// <summary>The last close of an open handle. The kernel ignores the result.</summary>
    ValueTask<FsError> ReleaseAsync(FuseContext ctx, ulong nodeId, ulong handle, CancellationToken ct);

    ValueTask<FsError> FsyncAsync(FuseContext ctx, ulong nodeId, ulong handle, bool dataOnly, CancellationToken ct);

    ValueTask<FsResult<OpenReply>> OpenDirAsync(FuseContext ctx, ulong nodeId, int flags, CancellationToken ct);

    /// <summary>Lists entries after <paramref name="offset"/> (0: from the start) into <paramref name="buffer"/>.</summary>
    ValueTask<FsError> ReadDirAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, DirectoryBuffer buffer, CancellationToken ct);

    ValueTask<FsError> ReleaseDirAsync(FuseContext ctx, ulong nodeId, ulong handle, CancellationToken ct);

    ValueTask<FsError> FsyncDirAsync(FuseContext ctx, ulong nodeId, ulong handle, bool dataOnly, CancellationToken ct);

    ValueTask<FsResult<StatFsReply>> StatFsAsync(FuseContext ctx, ulong nodeId, CancellationToken ct);

    /// <summary>setxattr: <paramref name="flags"/> is XATTR_CREATE (1) / XATTR_REPLACE (2) or 0.</summary>
    ValueTask<FsError> SetXattrAsync(FuseContext ctx, ulong nodeId, string name, ReadOnlyMemory<byte> value, int flags, CancellationToken ct);

    /// <summary>getxattr: with an empty <paramref name="destination"/> returns the value's size; otherwise copies
    /// it and returns its size, or ERANGE when it does not fit. ENODATA when absent.</summary>
    ValueTask<FsResult<int>> GetXattrAsync(FuseContext ctx, ulong nodeId, string name, Memory<byte> destination, CancellationToken ct);

    /// <summary>listxattr: NUL-terminated names, with the same size rules as <see cref="GetXattrAsync"/>.</summary>
    ValueTask<FsResult<int>> ListXattrAsync(FuseContext ctx, ulong nodeId, Memory<byte> destination, CancellationToken ct);

    ValueTask<FsError> RemoveXattrAsync(FuseContext ctx, ulong nodeId, string name, CancellationToken ct);

    /// <summary>access(2): <paramref name="mask"/> is R_OK/W_OK/X_OK bits, or F_OK (0).</summary>
    ValueTask<FsError> AccessAsync(FuseContext ctx, ulong nodeId, int mask, CancellationToken ct);

    ValueTask<FsError> FallocateAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, long length, int mode, CancellationToken ct);

    /// <summary>lseek for SEEK_DATA (3) and SEEK_HOLE (4); ENXIO past the end.</summary>
    ValueTask<FsResult<long>> LseekAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, int whence, CancellationToken ct);

    ValueTask<FsResult<long>> CopyFileRangeAsync(FuseContext ctx, ulong nodeIn, ulong handleIn, long offsetIn,
        ulong nodeOut, ulong handleOut, long offsetOut, long length, CancellationToken ct);
}
