using System.Text;
using Appliance.Fs.Api;
using Appliance.Fs.Protocol;

namespace Appliance.Fs.TestFs;

/// <summary>Attributes, file data, directories listings, xattrs.</summary>
public sealed partial class MemoryFileSystem
{
    private const int OTrunc = 0x200;
    private const int FallocKeepSize = 0x01;
    private const int FallocPunchHole = 0x02;
    private const int FallocZeroRange = 0x10;
    private const int SeekData = 3;
    private const int SeekHole = 4;

    public ValueTask<FsResult<AttrReply>> GetAttrAsync(FuseContext ctx, ulong nodeId, ulong? handle, CancellationToken ct) =>
        Gate is null ? new(GetAttr(nodeId)) : GatedAsync("getattr", null, ct, () => GetAttr(nodeId));

    public ValueTask<FsResult<AttrReply>> SetAttrAsync(FuseContext ctx, ulong nodeId, SetAttrRequest request, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(nodeId, out var n))
            {
                return new(Err(FsErrno.ENOENT));
            }
            if (request.Has(SetAttrValid.Size))
            {
                if (n.IsDir)
                {
                    return new(Err(FsErrno.EISDIR));
                }
                if (!n.IsReg)
                {
                    return new(Err(FsErrno.EINVAL));
                }
                if (request.Size > MaxFileSize)
                {
                    return new(Err(FsErrno.EFBIG));
                }
                Truncate(n, (long)request.Size);
                Touch(n, content: true);
            }
            if (request.Has(SetAttrValid.Mode))
            {
                n.Mode = (n.Mode & SIfMt) | (request.Mode & 0xFFF);
                Touch(n, content: false);
            }
            if (request.Has(SetAttrValid.Uid))
            {
                n.Uid = request.Uid;
                Touch(n, content: false);
            }
            if (request.Has(SetAttrValid.Gid))
            {
                n.Gid = request.Gid;
                Touch(n, content: false);
            }
            if (request.Has(SetAttrValid.Atime))
            {
                n.Atime = request.Atime;
                n.Ctime = Timestamp.Now;
            }
            if (request.Has(SetAttrValid.Mtime))
            {
                n.Mtime = request.Mtime;
                n.Ctime = Timestamp.Now;
            }
            if (request.Has(SetAttrValid.Ctime))
            {
                n.Ctime = request.Ctime;
            }
            return new(new AttrReply(AttrOf(n), AttrTimeout));
        }
    }

    public ValueTask<FsResult<string>> ReadLinkAsync(FuseContext ctx, ulong nodeId, CancellationToken ct)
    {
        lock (_lock)
        {
            return new(_nodes.TryGetValue(nodeId, out var n) ? n.Target is { } t ? t : Err(FsErrno.EINVAL) : Err(FsErrno.ENOENT));
        }
    }

    public ValueTask<FsResult<OpenReply>> OpenAsync(FuseContext ctx, ulong nodeId, int flags, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(nodeId, out var n))
            {
                return new(Err(FsErrno.ENOENT));
            }
            if ((flags & OTrunc) != 0 && n.IsReg && n.Size != 0)
            {
                Truncate(n, 0);
                Touch(n, content: true);
            }
            return new(new OpenReply(OpenHandle(n)));
        }
    }

    public ValueTask<FsResult<int>> ReadAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, Memory<byte> destination, CancellationToken ct) =>
        Gate is null ? new(Read(handle, offset, destination)) : GatedAsync("read", null, ct, () => Read(handle, offset, destination));

    public ValueTask<FsResult<int>> WriteAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, ReadOnlyMemory<byte> data, CancellationToken ct) =>
        Gate is null ? new(Write(handle, offset, data)) : GatedAsync("write", null, ct, () => Write(handle, offset, data));

    public ValueTask<FsError> FlushAsync(FuseContext ctx, ulong nodeId, ulong handle, CancellationToken ct) => new(FsError.Ok);

    public ValueTask<FsError> ReleaseAsync(FuseContext ctx, ulong nodeId, ulong handle, CancellationToken ct) => new(CloseHandle(handle));

    public ValueTask<FsError> FsyncAsync(FuseContext ctx, ulong nodeId, ulong handle, bool dataOnly, CancellationToken ct) => new(FsError.Ok);

    public ValueTask<FsResult<OpenReply>> OpenDirAsync(FuseContext ctx, ulong nodeId, int flags, CancellationToken ct)
    {
        lock (_lock)
        {
            return !_nodes.TryGetValue(nodeId, out var n) ? new(Err(FsErrno.ENOENT))
                : n.Dir is null ? new(Err(FsErrno.ENOTDIR))
                : new(new OpenReply(OpenHandle(n)));
        }
    }

    public ValueTask<FsError> ReadDirAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, DirectoryBuffer buffer, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!_handles.TryGetValue(handle, out var ino) || !_nodes.TryGetValue(ino, out var dir) || dir.Dir is null)
            {
                return new(Err(FsErrno.EBADF));
            }
            if (offset < 1 && !buffer.TryAdd(".", dir.Ino, SIfDir, 1))
            {
                return new(FsError.Ok);
            }
            if (offset < 2 && !buffer.TryAdd("..", dir.Dir.Parent, SIfDir, 2))
            {
                return new(FsError.Ok);
            }
            for (var i = dir.Dir.IndexAfter(offset); i < dir.Dir.Ordered.Count; i++)
            {
                var (cookie, name) = dir.Dir.Ordered[i];
                var child = _nodes[dir.Dir.ByName[name].Ino];
                var entry = buffer.Plus ? new Entry(child.Ino, child.Generation, AttrOf(child), EntryTimeout, AttrTimeout) : default;
                if (!buffer.TryAdd(name, child.Ino, child.Mode, cookie, entry))
                {
                    break;
                }
                if (buffer.Plus)
                {
                    child.Lookups++;
                }
            }
            return new(FsError.Ok);
        }
    }

    public ValueTask<FsError> ReleaseDirAsync(FuseContext ctx, ulong nodeId, ulong handle, CancellationToken ct) => new(CloseHandle(handle));

    public ValueTask<FsError> FsyncDirAsync(FuseContext ctx, ulong nodeId, ulong handle, bool dataOnly, CancellationToken ct) => new(FsError.Ok);

    public ValueTask<FsResult<StatFsReply>> StatFsAsync(FuseContext ctx, ulong nodeId, CancellationToken ct)
    {
        lock (_lock)
        {
            var blocks = (ulong)Capacity / 4096;
            var used = (ulong)_chunks * (ChunkSize / 4096);
            var free = used >= blocks ? 0 : blocks - used;
            const ulong Files = 1UL << 24;
            return new(new StatFsReply(blocks, free, free, Files, Files - (ulong)_nodes.Count, 4096, NameMax, 4096));
        }
    }

    public ValueTask<FsError> SetXattrAsync(FuseContext ctx, ulong nodeId, string name, ReadOnlyMemory<byte> value, int flags, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(nodeId, out var n))
            {
                return new(Err(FsErrno.ENOENT));
            }
            if (!SupportedXattr(name))
            {
                return new(Err(FsErrno.EOPNOTSUPP));
            }
            n.Xattrs ??= new(StringComparer.Ordinal);
            var exists = n.Xattrs.ContainsKey(name);
            if ((flags & 1) != 0 && exists)
            {
                return new(Err(FsErrno.EEXIST));
            }
            if ((flags & 2) != 0 && !exists)
            {
                return new(Err(FsErrno.ENODATA));
            }
            n.Xattrs[name] = value.ToArray();
            Touch(n, content: false);
            return new(FsError.Ok);
        }
    }

    public ValueTask<FsResult<int>> GetXattrAsync(FuseContext ctx, ulong nodeId, string name, Memory<byte> destination, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(nodeId, out var n))
            {
                return new(Err(FsErrno.ENOENT));
            }
            if (n.Xattrs is null || !n.Xattrs.TryGetValue(name, out var value))
            {
                return new(Err(FsErrno.ENODATA));
            }
            return new(CopyOut(value, destination));
        }
    }

    public ValueTask<FsResult<int>> ListXattrAsync(FuseContext ctx, ulong nodeId, Memory<byte> destination, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(nodeId, out var n))
            {
                return new(Err(FsErrno.ENOENT));
            }
            var list = new List<byte>();
            foreach (var name in n.Xattrs?.Keys.Order(StringComparer.Ordinal) ?? Enumerable.Empty<string>())
            {
                list.AddRange(Encoding.UTF8.GetBytes(name));
                list.Add(0);
            }
            return new(CopyOut([.. list], destination));
        }
    }

    public ValueTask<FsError> RemoveXattrAsync(FuseContext ctx, ulong nodeId, string name, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(nodeId, out var n))
            {
                return new(Err(FsErrno.ENOENT));
            }
            if (n.Xattrs is null || !n.Xattrs.Remove(name))
            {
                return new(Err(FsErrno.ENODATA));
            }
            Touch(n, content: false);
            return new(FsError.Ok);
        }
    }

    public ValueTask<FsError> AccessAsync(FuseContext ctx, ulong nodeId, int mask, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(nodeId, out var n))
            {
                return new(Err(FsErrno.ENOENT));
            }
            if (mask == 0)
            {
                return new(FsError.Ok);
            }
            if (ctx.Uid == 0)
            {
                // root may do anything, except execute a file nobody may execute.
                return new((mask & 1) != 0 && !n.IsDir && (n.Mode & 0x49) == 0 ? Err(FsErrno.EACCES) : FsError.Ok);
            }
            var bits = ctx.Uid == n.Uid ? (n.Mode >> 6) & 7 : ctx.Gid == n.Gid ? (n.Mode >> 3) & 7 : n.Mode & 7;
            return new((bits & (uint)mask) == (uint)mask ? FsError.Ok : Err(FsErrno.EACCES));
        }
    }

    public ValueTask<FsError> FallocateAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, long length, int mode, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!_handles.TryGetValue(handle, out var ino) || !_nodes.TryGetValue(ino, out var n) || !n.IsReg)
            {
                return new(Err(FsErrno.EBADF));
            }
            if (offset < 0 || length <= 0)
            {
                return new(Err(FsErrno.EINVAL));
            }
            if (length > MaxFileSize || offset > MaxFileSize - length)
            {
                return new(Err(FsErrno.EFBIG));
            }
            var end = offset + length;
            var keepSize = (mode & FallocKeepSize) != 0;
            switch (mode & ~FallocKeepSize)
            {
                case 0:
                    if (!Allocate(n, offset, end))
                    {
                        return new(Err(FsErrno.ENOSPC));
                    }
                    break;
                case FallocPunchHole when keepSize:
                    Zero(n, offset, end, dropWhole: true);
                    break;
                case FallocZeroRange:
                    Zero(n, offset, end, dropWhole: false);
                    if (!Allocate(n, offset, end))
                    {
                        return new(Err(FsErrno.ENOSPC));
                    }
                    break;
                default:
                    return new(Err(FsErrno.EOPNOTSUPP));
            }
            if (!keepSize && end > n.Size)
            {
                n.Size = end;
            }
            Touch(n, content: true);
            return new(FsError.Ok);
        }
    }

    public ValueTask<FsResult<long>> LseekAsync(FuseContext ctx, ulong nodeId, ulong handle, long offset, int whence, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!_handles.TryGetValue(handle, out var ino) || !_nodes.TryGetValue(ino, out var n) || !n.IsReg)
            {
                return new(Err(FsErrno.EBADF));
            }
            if (whence is not (SeekData or SeekHole))
            {
                return new(Err(FsErrno.EINVAL));
            }
            if (offset < 0 || offset >= n.Size)
            {
                return new(Err(FsErrno.ENXIO));
            }
            var chunk = offset / ChunkSize;
            if (whence == SeekData)
            {
                long? first = null;
                foreach (var c in n.Chunks!.Keys)
                {
                    if (c >= chunk && c * ChunkSize < n.Size && (first is null || c < first))
                    {
                        first = c;
                    }
                }
                return first is { } f ? new(Math.Max(offset, f * ChunkSize)) : new(Err(FsErrno.ENXIO));
            }
            while (n.Chunks!.ContainsKey(chunk) && chunk * ChunkSize < n.Size)
            {
                chunk++;
            }
            return new(Math.Min(Math.Max(offset, chunk * ChunkSize), n.Size));
        }
    }

    public ValueTask<FsResult<long>> CopyFileRangeAsync(FuseContext ctx, ulong nodeIn, ulong handleIn, long offsetIn,
        ulong nodeOut, ulong handleOut, long offsetOut, long length, CancellationToken ct)
    {
        var chunk = new byte[(int)Math.Min(length, 16L << 20)];
        var read = Read(handleIn, offsetIn, chunk);
        if (!read.IsOk)
        {
            return new(Err(read.Errno));
        }
        var written = Write(handleOut, offsetOut, chunk.AsMemory(0, read.Value));
        return written.IsOk ? new((long)written.Value) : new(Err(written.Errno));
    }

    private FsResult<AttrReply> GetAttr(ulong nodeId)
    {
        lock (_lock)
        {
            return _nodes.TryGetValue(nodeId, out var n) ? new AttrReply(AttrOf(n), AttrTimeout) : Err(FsErrno.ENOENT);
        }
    }

    private FsResult<int> Read(ulong handle, long offset, Memory<byte> destination)
    {
        lock (_lock)
        {
            if (!_handles.TryGetValue(handle, out var ino) || !_nodes.TryGetValue(ino, out var n) || !n.IsReg)
            {
                return Err(FsErrno.EBADF);
            }
            if (offset < 0)
            {
                return Err(FsErrno.EINVAL);
            }
            if (offset >= n.Size)
            {
                return 0;
            }
            var count = (int)Math.Min(destination.Length, n.Size - offset);
            var dest = destination.Span[..count];
            var done = 0;
            while (done < count)
            {
                var at = offset + done;
                var inChunk = (int)(at % ChunkSize);
                var take = Math.Min(count - done, ChunkSize - inChunk);
                if (n.Chunks!.TryGetValue(at / ChunkSize, out var data))
                {
                    data.AsSpan(inChunk, take).CopyTo(dest[done..]);
                }
                else
                {
                    dest.Slice(done, take).Clear();
                }
                done += take;
            }
            return count;
        }
    }

    private FsResult<int> Write(ulong handle, long offset, ReadOnlyMemory<byte> data)
    {
        lock (_lock)
        {
            if (!_handles.TryGetValue(handle, out var ino) || !_nodes.TryGetValue(ino, out var n) || !n.IsReg)
            {
                return Err(FsErrno.EBADF);
            }
            if (offset < 0)
            {
                return Err(FsErrno.EINVAL);
            }
            if (offset > MaxFileSize - data.Length)
            {
                return Err(FsErrno.EFBIG);
            }
            if (!Allocate(n, offset, offset + data.Length))
            {
                return Err(FsErrno.ENOSPC);
            }
            var src = data.Span;
            var done = 0;
            while (done < src.Length)
            {
                var at = offset + done;
                var inChunk = (int)(at % ChunkSize);
                var take = Math.Min(src.Length - done, ChunkSize - inChunk);
                src.Slice(done, take).CopyTo(n.Chunks![at / ChunkSize].AsSpan(inChunk));
                done += take;
            }
            n.Size = Math.Max(n.Size, offset + src.Length);
            LargestWrite = Math.Max(LargestWrite, src.Length);
            Touch(n, content: true);
            return src.Length;
        }
    }

    private void Truncate(Node n, long size)
    {
        if (size < n.Size)
        {
            Zero(n, size, long.MaxValue / 2, dropWhole: true);
        }
        n.Size = size;
    }

    /// <summary>Zeroes [start, end): whole chunks inside are dropped (holes) when <paramref name="dropWhole"/>.</summary>
    private void Zero(Node n, long start, long end, bool dropWhole)
    {
        foreach (var c in n.Chunks!.Keys.ToList())
        {
            var chunkStart = c * ChunkSize;
            var chunkEnd = chunkStart + ChunkSize;
            if (chunkEnd <= start || chunkStart >= end)
            {
                continue;
            }
            if (dropWhole && start <= chunkStart && end >= chunkEnd)
            {
                n.Chunks.Remove(c);
                _chunks--;
                continue;
            }
            var from = (int)(Math.Max(start, chunkStart) - chunkStart);
            var to = (int)(Math.Min(end, chunkEnd) - chunkStart);
            n.Chunks[c].AsSpan(from, to - from).Clear();
        }
    }

    /// <summary>Allocates the missing chunks of [start, end), all or none (ENOSPC past <see cref="Capacity"/>).</summary>
    private bool Allocate(Node n, long start, long end)
    {
        var missing = 0L;
        for (var c = start / ChunkSize; c * ChunkSize < end; c++)
        {
            if (!n.Chunks!.ContainsKey(c) && (_chunks + ++missing) * ChunkSize > Capacity)
            {
                return false;
            }
        }
        for (var c = start / ChunkSize; c * ChunkSize < end; c++)
        {
            if (n.Chunks!.TryAdd(c, new byte[ChunkSize]))
            {
                _chunks++;
            }
        }
        return true;
    }

    private ulong OpenHandle(Node n)
    {
        lock (_lock)
        {
            var h = _nextHandle++;
            _handles[h] = n.Ino;
            n.OpenCount++;
            return h;
        }
    }

    private FsError CloseHandle(ulong handle)
    {
        lock (_lock)
        {
            if (!_handles.Remove(handle, out var ino))
            {
                return Err(FsErrno.EBADF);
            }
            if (_nodes.TryGetValue(ino, out var n))
            {
                n.OpenCount--;
                MaybeFree(n);
            }
            return FsError.Ok;
        }
    }

    private static bool SupportedXattr(string name) =>
        name.StartsWith("user.", StringComparison.Ordinal) || name.StartsWith("trusted.", StringComparison.Ordinal)
        || name.StartsWith("security.", StringComparison.Ordinal);

    private static FsResult<int> CopyOut(byte[] value, Memory<byte> destination)
    {
        if (destination.IsEmpty)
        {
            return value.Length;
        }
        if (value.Length > destination.Length)
        {
            return Err(FsErrno.ERANGE);
        }
        value.CopyTo(destination);
        return value.Length;
    }
}
