using Appliance.Fs.Api;
using Appliance.Fs.Meta;

namespace Appliance.Fs.Cluster;

/// <summary>Open files and directories: data straight to the data pool, the size and mtime to the metadata PG.</summary>
public sealed partial class ClusterFileSystem
{
    private const int OTrunc = 0x200;
    private const int OExcl = 0x80;
    private const int FallocKeepSize = 0x01;
    private const int FallocPunchHole = 0x02;
    private const int FallocZeroRange = 0x10;
    private const int SeekData = 3;
    private const int SeekHole = 4;

    /// <summary>What an open asks for (O_RDONLY 0, O_WRONLY 1, O_RDWR 2; O_TRUNC writes).</summary>
    private static uint AccessOf(int flags) => (flags & 3) switch
    {
        0 => MetaOps.MakeWantRead | ((flags & OTrunc) != 0 ? MetaOps.MakeWantWrite : 0),
        1 => MetaOps.MakeWantWrite,
        _ => MetaOps.MakeWantRead | MetaOps.MakeWantWrite,
    };

    private ulong NewHandle(Handle h)
    {
        var id = (ulong)Interlocked.Increment(ref _nextHandle);
        _handles[id] = h;
        return id;
    }

    /// <summary>Registers an open of <paramref name="n"/> (close-to-open: its size as the metadata PG has it now).</summary>
    private ulong OpenFile(Inode n, int flags)
    {
        lock (_openLock)
        {
            if (!_open.TryGetValue(n.Ino, out var o))
            {
                _open[n.Ino] = o = new OpenInode { Size = n.Size };
            }
            else if (o.Handles == 0)
            {
                o.Size = n.Size;
            }
            o.Handles++;
        }
        return NewHandle(new FileHandle { Ino = n.Ino, Flags = flags });
    }

    /// <summary>O_TRUNC of a file that holds data: the metadata first, then the data objects.</summary>
    private async Task<Inode> TruncateOnOpenAsync(FuseContext ctx, Inode n, CancellationToken ct)
    {
        if (n.Size == 0)
        {
            return n;
        }
        var r = await CallAsync(Req(MetaOp.SetAttr, ctx) with { Ino = n.Ino, Valid = AttrMask.Size | AttrMask.ByHandle, Size = 0 }, ct);
        if (!r.IsOk)
        {
            throw new FsException(r.Errno, "truncate on open");
        }
        await _data.TruncateAsync(n.Ino, n.Size, 0, ct);
        return r.Inode!;
    }

    public ValueTask<FsResult<OpenReply>> OpenAsync(FuseContext ctx, ulong nodeId, int flags, CancellationToken ct) => GuardAsync<OpenReply>(async () =>
    {
        var r = await CallAsync(Req(MetaOp.GetAttr, ctx) with { Ino = nodeId }, ct);
        if (!r.IsOk)
        {
            return new FsError(r.Errno);
        }
        var n = r.Inode!;
        if (n.IsDir)
        {
            return new FsError(FsErrno.EISDIR);
        }
        if ((flags & OTrunc) != 0 && n.IsReg)
        {
            n = await TruncateOnOpenAsync(ctx, n, ct);
        }
        return new OpenReply(OpenFile(n, flags));
    });

    public ValueTask<FsResult<CreateReply>> CreateAsync(FuseContext ctx, ulong parent, string name, uint mode, int flags, CancellationToken ct) => GuardAsync<CreateReply>(async () =>
    {
        var r = await CallAsync(Req(MetaOp.Make, ctx) with
        {
            Ino = parent,
            Name = name,
            Mode = ModeBits.IfReg | (mode & ModeBits.Perms),
            Flags = MetaOps.WantParent | ((flags & OExcl) != 0 ? 0 : MetaOps.MakeOpenExisting | AccessOf(flags)),
        }, ct);
        if (!r.IsOk)
        {
            return new FsError(r.Errno);
        }
        var n = r.Inode!;
        if ((flags & OTrunc) != 0)
        {
            n = await TruncateOnOpenAsync(ctx, n, ct);
        }
        return new CreateReply(EntryOf(n), new OpenReply(OpenFile(n, flags)));
    });

    private bool TryFile(ulong handle, out FileHandle h)
    {
        h = (_handles.GetValueOrDefault(handle) as FileHandle)!;
        return h is not null;
    }

    public ValueTask<FsResult<int>> ReadAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, Memory<byte> destination, CancellationToken ct) => GuardAsync<int>(async () =>
    {
        if (!TryFile(handle, out var h))
        {
            return new FsError(FsErrno.EBADF);
        }
        var size = (long)KnownSize(h.Ino);
        if (offset >= size)
        {
            return 0;
        }
        var n = (int)Math.Min(destination.Length, size - offset);
        await _data.ReadAsync(h.Ino, offset, destination[..n], ct);
        return n;
    });

    public ValueTask<FsResult<int>> WriteAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, ReadOnlyMemory<byte> data, CancellationToken ct) => GuardAsync<int>(async () =>
    {
        if (!TryFile(handle, out var h))
        {
            return new FsError(FsErrno.EBADF);
        }
        if ((h.Flags & OAppend) != 0 && data.Length > 0)
        {
            // O_APPEND: the kernel's offset is its own idea of the end; the metadata PG gives this write its room at
            // the real end, so appends from every mount land one after another, none over another.
            var room = await CallAsync(Req(MetaOp.Append, ctx) with { Ino = h.Ino, Size = (ulong)data.Length, Mtime = Now() }, ct);
            if (!room.IsOk)
            {
                return new FsError(room.Errno);
            }
            offset = (long)(room.Inode!.Size - (ulong)data.Length);
        }
        var end = (ulong)(offset + data.Length);
        if (end > MetaOps.MaxFileSize)
        {
            return new FsError(FsErrno.EFBIG);
        }
        await _data.WriteAsync(h.Ino, offset, data, ct);
        // The size and mtime reach the metadata PG at flush (every close), fsync or release: close-to-open, as
        // this mount's own attributes already show the new size. Unsynced writes may be lost in a crash anyway.
        GrowLocally(h.Ino, end);
        h.Dirty = true;
        h.LastWrite = Now();
        return data.Length;
    });

    private const int OAppend = 0x400;

    private void GrowLocally(ulong ino, ulong end)
    {
        lock (_openLock)
        {
            if (_open.TryGetValue(ino, out var o) && o.Size < end)
            {
                o.Size = end;
            }
        }
    }

    /// <summary>A new size (and mtime) to the metadata PG at once (fallocate, copy_file_range). False when the size
    /// did not grow (the mtime then goes at flush).</summary>
    private async Task<bool> GrowAsync(FuseContext ctx, ulong ino, ulong end, MetaTime now, CancellationToken ct)
    {
        lock (_openLock)
        {
            if (!_open.TryGetValue(ino, out var o) || o.Size >= end)
            {
                return false;
            }
            o.Size = end;
        }
        var r = await CallAsync(Req(MetaOp.Written, ctx) with { Ino = ino, Size = end, Mtime = now }, ct);
        return r.IsOk ? true : throw new FsException(r.Errno, "size update");
    }

    private async Task<FsError> FlushHandleAsync(FuseContext ctx, FileHandle h, CancellationToken ct)
    {
        if (!h.Dirty)
        {
            return FsError.Ok;
        }
        h.Dirty = false;
        var r = await CallAsync(Req(MetaOp.Written, ctx) with { Ino = h.Ino, Size = KnownSize(h.Ino), Mtime = h.LastWrite }, ct);
        return new FsError(r.Errno);
    }

    public ValueTask<FsError> FlushAsync(FuseContext ctx, ulong nodeId, ulong handle, CancellationToken ct) => GuardAsync(async () =>
        TryFile(handle, out var h) ? await FlushHandleAsync(ctx, h, ct) : new FsError(FsErrno.EBADF));

    /// <summary>Data writes are durable when answered (the OSDs acknowledge only then); fsync sends what metadata
    /// this handle still owes.</summary>
    public ValueTask<FsError> FsyncAsync(FuseContext ctx, ulong nodeId, ulong handle, bool dataOnly, CancellationToken ct) => FlushAsync(ctx, nodeId, handle, ct);

    public ValueTask<FsError> ReleaseAsync(FuseContext ctx, ulong nodeId, ulong handle, CancellationToken ct) => GuardAsync(async () =>
    {
        if (!_handles.TryRemove(handle, out var any) || any is not FileHandle h)
        {
            return new FsError(FsErrno.EBADF);
        }
        OpenInode? purge = null;
        try
        {
            await FlushHandleAsync(ctx, h, ct);
        }
        finally
        {
            lock (_openLock)
            {
                if (_open.TryGetValue(h.Ino, out var o) && --o.Handles == 0)
                {
                    _open.Remove(h.Ino);
                    purge = o.Orphaned ? o : null;
                }
            }
        }
        if (purge is not null)
        {
            await PurgeAsync(h.Ino, purge.Size, ct);
        }
        return FsError.Ok;
    });

    public ValueTask<FsResult<OpenReply>> OpenDirAsync(FuseContext ctx, ulong nodeId, int flags, CancellationToken ct) => GuardAsync<OpenReply>(async () =>
    {
        var r = await CallAsync(Req(MetaOp.GetAttr, ctx) with { Ino = nodeId }, ct);
        if (!r.IsOk)
        {
            return new FsError(r.Errno);
        }
        return r.Inode!.IsDir ? new OpenReply(NewHandle(new DirHandle { Ino = nodeId, Parent = r.Inode.Parent })) : new FsError(FsErrno.ENOTDIR);
    });

    /// <summary>A listing is read whole when it starts (offset 0) and served from the handle: offsets are positions
    /// in it (0 ".", 1 "..", then the entries), so a listing continued from an offset neither repeats nor skips.</summary>
    public ValueTask<FsError> ReadDirAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, DirectoryBuffer buffer, CancellationToken ct) => GuardAsync(async () =>
    {
        if (_handles.GetValueOrDefault(handle) is not DirHandle h)
        {
            return new FsError(FsErrno.EBADF);
        }
        if (offset == 0 || h.Listing is null)
        {
            var listing = new List<DirEntry>();
            var after = "";
            while (true)
            {
                var r = await CallAsync(Req(MetaOp.ReadDir, ctx) with { Ino = h.Ino, Name = after, Limit = 512, Flags = buffer.Plus ? 1u : 0 }, ct);
                if (!r.IsOk)
                {
                    return new FsError(r.Errno);
                }
                listing.AddRange(r.Entries);
                if (!r.More || r.Entries.Count == 0)
                {
                    break;
                }
                after = r.Entries[^1].Name;
            }
            h.Listing = listing;
        }
        for (var p = offset; p < h.Listing.Count + 2; p++)
        {
            bool added;
            if (p < 2)
            {
                added = buffer.TryAdd(p == 0 ? "." : "..", p == 0 ? h.Ino : h.Parent, ModeBits.IfDir, p + 1);
            }
            else
            {
                var e = h.Listing[(int)p - 2];
                added = buffer.TryAdd(e.Name, e.Entry.Ino, e.Entry.Type, p + 1, e.Inode is { } n ? EntryOf(n) : default);
            }
            if (!added)
            {
                break;
            }
        }
        return FsError.Ok;
    });

    public ValueTask<FsError> ReleaseDirAsync(FuseContext ctx, ulong nodeId, ulong handle, CancellationToken ct) =>
        new(_handles.TryRemove(handle, out _) ? FsError.Ok : new FsError(FsErrno.EBADF));

    public ValueTask<FsError> FsyncDirAsync(FuseContext ctx, ulong nodeId, ulong handle, bool dataOnly, CancellationToken ct) =>
        new(FsError.Ok); // metadata is durable when answered

    public ValueTask<FsError> FallocateAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, long length, int mode, CancellationToken ct) => GuardAsync(async () =>
    {
        if (!TryFile(handle, out var h))
        {
            return new FsError(FsErrno.EBADF);
        }
        if (offset < 0 || length <= 0)
        {
            return new FsError(FsErrno.EINVAL);
        }
        var end = (ulong)(offset + length);
        if (end > MetaOps.MaxFileSize)
        {
            return new FsError(FsErrno.EFBIG);
        }
        var size = KnownSize(h.Ino);
        switch (mode)
        {
            case 0:
            case FallocKeepSize:
                // Space is not reserved (pools are thin); without KEEP_SIZE the file grows.
                break;
            case FallocPunchHole | FallocKeepSize:
            case FallocZeroRange:
            case FallocZeroRange | FallocKeepSize:
                if ((ulong)offset < size)
                {
                    await _data.ZeroAsync(h.Ino, offset, (long)Math.Min(end, size) - offset, ct);
                }
                break;
            default:
                return new FsError(FsErrno.EOPNOTSUPP);
        }
        if ((mode & FallocKeepSize) == 0)
        {
            await GrowAsync(ctx, h.Ino, end, Now(), ct);
        }
        return FsError.Ok;
    });

    /// <summary>SEEK_DATA / SEEK_HOLE: the whole file is data (holes are not tracked), which POSIX allows.</summary>
    public ValueTask<FsResult<long>> LseekAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, int whence, CancellationToken ct)
    {
        if (!TryFile(handle, out var h))
        {
            return new(new FsError(FsErrno.EBADF));
        }
        var size = (long)KnownSize(h.Ino);
        if (whence is not (SeekData or SeekHole))
        {
            return new(new FsError(FsErrno.EINVAL));
        }
        if (offset < 0 || offset >= size)
        {
            return new(new FsError(FsErrno.ENXIO));
        }
        return new(whence == SeekData ? offset : size);
    }

    /// <summary>copy_file_range through this mount (read, then write, 1 MiB at a time).</summary>
    public ValueTask<FsResult<long>> CopyFileRangeAsync(FuseContext ctx, ulong nodeIn, ulong handleIn, long offsetIn,
        ulong nodeOut, ulong handleOut, long offsetOut, long length, CancellationToken ct) => GuardAsync<long>(async () =>
    {
        if (!TryFile(handleIn, out var hin) || !TryFile(handleOut, out var hout))
        {
            return new FsError(FsErrno.EBADF);
        }
        var n = Math.Min(length, (long)KnownSize(hin.Ino) - offsetIn);
        if (n <= 0)
        {
            return 0L;
        }
        if ((ulong)(offsetOut + n) > MetaOps.MaxFileSize)
        {
            return new FsError(FsErrno.EFBIG);
        }
        var buffer = new byte[(int)Math.Min(n, 1 << 20)];
        for (long done = 0; done < n;)
        {
            var chunk = (int)Math.Min(buffer.Length, n - done);
            await _data.ReadAsync(hin.Ino, offsetIn + done, buffer.AsMemory(0, chunk), ct);
            await _data.WriteAsync(hout.Ino, offsetOut + done, buffer.AsMemory(0, chunk), ct);
            done += chunk;
        }
        var now = Now();
        if (!await GrowAsync(ctx, hout.Ino, (ulong)(offsetOut + n), now, ct))
        {
            hout.Dirty = true;
            hout.LastWrite = now;
        }
        return n;
    });
}
