using System.Text;
using Appliance.Fs.Api;
using Appliance.Fs.Meta;
using Appliance.Fs.Protocol;

namespace Appliance.Fs.Cluster;

/// <summary>Name and attribute operations: each is one metadata call (two for a truncate: the old size first).</summary>
public sealed partial class ClusterFileSystem
{
    public ValueTask<FsResult<Entry>> LookupAsync(FuseContext ctx, ulong parent, string name, CancellationToken ct) => GuardAsync<Entry>(async () =>
    {
        var r = await CallAsync(Req(MetaOp.Lookup, ctx) with { Ino = parent, Name = name }, ct);
        return r.IsOk ? EntryOf(r.Inode!) : new FsError(r.Errno);
    });

    public ValueTask<FsResult<AttrReply>> GetAttrAsync(FuseContext ctx, ulong nodeId, ulong? handle, CancellationToken ct) => GuardAsync<AttrReply>(async () =>
    {
        if (_dirAttrs.TryGet(nodeId, out var dir, out var left))
        {
            return new AttrReply(AttrOf(dir), left);
        }
        var r = await CallAsync(Req(MetaOp.GetAttr, ctx) with { Ino = nodeId }, ct);
        return r.IsOk ? AttrReplyOf(r.Inode!) : new FsError(r.Errno);
    });

    public ValueTask<FsResult<AttrReply>> SetAttrAsync(FuseContext ctx, ulong nodeId, SetAttrRequest request, CancellationToken ct) => GuardAsync<AttrReply>(async () =>
    {
        var mask = AttrMask.None;
        void Map(SetAttrValid bit, AttrMask to)
        {
            if (request.Has(bit))
            {
                mask |= to;
            }
        }
        Map(SetAttrValid.Mode, AttrMask.Mode);
        Map(SetAttrValid.Uid, AttrMask.Uid);
        Map(SetAttrValid.Gid, AttrMask.Gid);
        Map(SetAttrValid.Size, AttrMask.Size);
        Map(SetAttrValid.Atime, AttrMask.Atime);
        Map(SetAttrValid.Mtime, AttrMask.Mtime);
        if (request.Handle is not null)
        {
            mask |= AttrMask.ByHandle;
        }
        ulong oldSize = 0;
        if ((mask & AttrMask.Size) != 0)
        {
            var before = await CallAsync(Req(MetaOp.GetAttr, ctx) with { Ino = nodeId }, ct);
            if (!before.IsOk)
            {
                return new FsError(before.Errno);
            }
            oldSize = Math.Max(before.Inode!.Size, KnownSize(nodeId));
        }
        var r = await CallAsync(Req(MetaOp.SetAttr, ctx) with
        {
            Ino = nodeId,
            Valid = mask,
            Mode = request.Mode,
            Uid = request.Uid,
            Gid = request.Gid,
            Size = request.Size,
            Atime = M(request.Atime),
            Mtime = M(request.Mtime),
        }, ct);
        if (!r.IsOk)
        {
            return new FsError(r.Errno);
        }
        if ((mask & AttrMask.Size) != 0)
        {
            // The size is cut first in the metadata (checked, durable), then the data past it goes: a crash between
            // leaves bytes past the end that nobody reads; a later extension over them is what `fs check` repairs.
            SetKnownSize(nodeId, request.Size);
            await _data.TruncateAsync(nodeId, oldSize, request.Size, ct);
        }
        return AttrReplyOf(r.Inode!);
    });

    public ValueTask<FsResult<string>> ReadLinkAsync(FuseContext ctx, ulong nodeId, CancellationToken ct) => GuardAsync<string>(async () =>
    {
        var r = await CallAsync(Req(MetaOp.GetAttr, ctx) with { Ino = nodeId }, ct);
        return !r.IsOk ? new FsError(r.Errno) : r.Inode!.Target is { } t ? t : new FsError(FsErrno.EINVAL);
    });

    private ValueTask<FsResult<Entry>> MakeAsync(FuseContext ctx, ulong parent, string name, uint mode, uint rdev, byte[] data, CancellationToken ct) => GuardAsync<Entry>(async () =>
    {
        var r = await CallAsync(Req(MetaOp.Make, ctx) with { Ino = parent, Name = name, Mode = mode, Rdev = rdev, Data = data, Flags = MetaOps.WantParent }, ct);
        return r.IsOk ? EntryOf(r.Inode!) : new FsError(r.Errno);
    });

    public ValueTask<FsResult<Entry>> SymlinkAsync(FuseContext ctx, ulong parent, string name, string target, CancellationToken ct) =>
        MakeAsync(ctx, parent, name, ModeBits.IfLnk | 0x1FF, 0, Encoding.UTF8.GetBytes(target), ct);

    public ValueTask<FsResult<Entry>> MkNodAsync(FuseContext ctx, ulong parent, string name, uint mode, uint rdev, CancellationToken ct) =>
        MakeAsync(ctx, parent, name, mode, rdev, [], ct);

    public ValueTask<FsResult<Entry>> MkDirAsync(FuseContext ctx, ulong parent, string name, uint mode, CancellationToken ct) =>
        MakeAsync(ctx, parent, name, ModeBits.IfDir | (mode & ModeBits.Perms), 0, [], ct);

    public ValueTask<FsError> UnlinkAsync(FuseContext ctx, ulong parent, string name, CancellationToken ct) => GuardAsync(async () =>
    {
        // Orphans whose data is gone ride along: purged in this unlink's transaction rather than one of their own.
        var riders = _purges.Take();
        MetaReply r;
        try
        {
            r = await CallAsync(Req(MetaOp.Unlink, ctx) with { Ino = parent, Name = name, Data = MetaOps.EncodePurgeRiders(riders), Flags = MetaOps.WantParent }, ct);
        }
        catch
        {
            _purges.Return(riders);
            throw;
        }
        if (!r.IsOk)
        {
            _purges.Return(riders);
        }
        if (r.IsOk && r.Released is { } gone)
        {
            await ReleasedAsync(gone, ct);
        }
        return new FsError(r.Errno);
    });

    public ValueTask<FsError> RmDirAsync(FuseContext ctx, ulong parent, string name, CancellationToken ct) => GuardAsync(async () =>
        new FsError((await CallAsync(Req(MetaOp.RmDir, ctx) with { Ino = parent, Name = name }, ct)).Errno));

    public ValueTask<FsError> RenameAsync(FuseContext ctx, ulong parent, string name, ulong newParent, string newName, RenameFlags flags, CancellationToken ct) => GuardAsync(async () =>
    {
        var r = await CallAsync(Req(MetaOp.Rename, ctx) with { Ino = parent, Name = name, Ino2 = newParent, Name2 = newName, Flags = (uint)flags }, ct);
        if (r.IsOk && r.Released is { } gone)
        {
            await ReleasedAsync(gone, ct);
        }
        return new FsError(r.Errno);
    });

    public ValueTask<FsResult<Entry>> LinkAsync(FuseContext ctx, ulong nodeId, ulong newParent, string newName, CancellationToken ct) => GuardAsync<Entry>(async () =>
    {
        var r = await CallAsync(Req(MetaOp.Link, ctx) with { Ino = nodeId, Ino2 = newParent, Name2 = newName }, ct);
        return r.IsOk ? EntryOf(r.Inode!) : new FsError(r.Errno);
    });

    public ValueTask<FsError> AccessAsync(FuseContext ctx, ulong nodeId, int mask, CancellationToken ct) => GuardAsync(async () =>
        new FsError((await CallAsync(Req(MetaOp.Access, ctx) with { Ino = nodeId, Mode = (uint)mask }, ct)).Errno));

    /// <summary>An inode lost its last link: its data objects go now and the inode and its orphan entry with the next
    /// unlink's transaction (or <see cref="PurgeQueue"/>'s own purge soon after), or all of it at the last release of
    /// this mount's handles on it. Until purged it stays on the orphan list, which is how a crash in between is found
    /// again.</summary>
    private async Task ReleasedAsync(Inode gone, CancellationToken ct)
    {
        lock (_openLock)
        {
            if (_open.TryGetValue(gone.Ino, out var o) && o.Handles > 0)
            {
                o.Orphaned = true;
                return;
            }
        }
        await _data.RemoveAllAsync(gone.Ino, gone.Size, ct);
        _purges.Add(gone.Ino);
    }

    /// <summary>Purges what is still waiting for an unlink to ride on (the mount calls it before it ends).</summary>
    public Task FlushPurgesAsync(CancellationToken ct) => _purges.FlushAsync(ct);

    /// <summary>
    /// Purges every orphan on the filesystem's list that this mount does not hold open: the unlinked-while-open files
    /// of mounts that ended without closing them (a crash, a kill). Only safe when no other live mount may hold one
    /// open (`fs mount` calls it when it is the only mount). Returns how many it purged.
    /// </summary>
    public async Task<int> SweepOrphansAsync(CancellationToken ct)
    {
        var purged = 0;
        ulong after = 0;
        while (true)
        {
            var page = await CallAsync(new MetaRequest(MetaOp.ListOrphans, Caller.Root, Now()) { Ino = after, Limit = 256 }, ct);
            if (!page.IsOk || page.Orphans.Count == 0)
            {
                return purged;
            }
            foreach (var ino in page.Orphans)
            {
                after = ino;
                lock (_openLock)
                {
                    if (_open.TryGetValue(ino, out var o) && o.Handles > 0)
                    {
                        continue;
                    }
                }
                var attr = await CallAsync(new MetaRequest(MetaOp.GetAttr, Caller.Root, Now()) { Ino = ino }, ct);
                if (!attr.IsOk || attr.Inode!.Nlink != 0)
                {
                    continue;
                }
                await PurgeAsync(ino, attr.Inode.Size, ct);
                purged++;
            }
        }
    }

    private async Task PurgeAsync(ulong ino, ulong size, CancellationToken ct)
    {
        await _data.RemoveAllAsync(ino, size, ct);
        await CallAsync(new MetaRequest(MetaOp.Purge, Caller.Root, Now()) { Ino = ino }, ct);
    }

    private ulong KnownSize(ulong ino)
    {
        lock (_openLock)
        {
            return _open.TryGetValue(ino, out var o) ? o.Size : 0;
        }
    }

    private void SetKnownSize(ulong ino, ulong size)
    {
        lock (_openLock)
        {
            if (_open.TryGetValue(ino, out var o))
            {
                o.Size = size;
            }
        }
    }
}
