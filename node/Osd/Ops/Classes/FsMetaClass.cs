using Appliance.Fs.Meta;
using Appliance.Osd.Protocol;
using Appliance.Store;

namespace Appliance.Osd.Ops.Classes;

/// <summary>
/// The cluster filesystem's metadata class (`fsmeta`): runs fs/Meta's operations on the PG primary, inside the
/// request, against the filesystem's objects in this PG (see <see cref="MetaObjects"/>). Called on the superblock
/// object, so the object lock orders every metadata operation of one filesystem; the changes are one logged,
/// replicated transaction, so a rename across directories is atomic and survives a failover.
/// Methods: <c>run</c> (any operation) and <c>query</c> (read-only operations: nothing logged, read access suffices).
/// Input: an encoded <see cref="MetaRequest"/>; output: an encoded <see cref="MetaReply"/> (an errno of the
/// filesystem is a reply, not a failed request).
/// </summary>
public sealed class FsMetaClass : IObjectClass
{
    private const string Run = MetaObjects.RunMethod;
    private const string Query = MetaObjects.QueryMethod;

    public string Name => MetaObjects.ClassName;

    public bool IsReadOnly(string method) => method == Query;

    public async Task<MethodResult> CallAsync(string method, IMethodContext context, ReadOnlyMemory<byte> input)
    {
        if (method is not (Run or Query))
        {
            return new MethodResult(OsdResult.NotSupported, default);
        }
        if (MetaObjects.FsOfSuper(context.Target.Name) is not { } fs)
        {
            return new MethodResult(OsdResult.InvalidArgument, default);
        }
        MetaRequest req;
        try
        {
            req = MetaRequest.Decode(input.Span);
        }
        catch (MetaFormatException)
        {
            return new MethodResult(OsdResult.InvalidArgument, default);
        }
        if (method == Query && !MetaOps.IsReadOnly(req.Op))
        {
            return new MethodResult(OsdResult.InvalidArgument, default);
        }
        var source = new Source(context, fs);
        MetaReply reply;
        MetaChanges changes;
        try
        {
            (reply, changes) = await MetaOps.RunAsync(source, req);
        }
        catch (MetaFormatException)
        {
            // A stored record that does not decode: refuse the operation rather than build on it.
            return new MethodResult(OsdResult.IoError, default);
        }
        if (!changes.IsEmpty)
        {
            await ApplyAsync(context, source, changes);
        }
        return new MethodResult(OsdResult.Ok, reply.Encode());
    }

    /// <summary>Every change, all reads having happened before (the method context refuses a read after a change
    /// to the same object): inode records first (a new directory exists before its entries), then entries, the
    /// superblock and the orphan list, and removals last (entries of a removed directory go with its object).</summary>
    private static async Task ApplyAsync(IMethodContext ctx, Source s, MetaChanges c)
    {
        foreach (var (ino, data) in c.Inodes)
        {
            if (data is not null)
            {
                await ctx.WriteFullAsync(s.InodeOid(ino), data);
            }
        }
        foreach (var group in c.Entries.GroupBy(e => e.Key.Dir))
        {
            var oid = s.InodeOid(group.Key);
            var set = group.Where(e => e.Value is not null).Select(e => new KeyValuePair<string, byte[]>(e.Key.Name, e.Value!)).ToList();
            var removed = group.Where(e => e.Value is null).Select(e => e.Key.Name).ToList();
            if (removed.Count > 0)
            {
                await ctx.OmapRemoveAsync(oid, removed);
            }
            if (set.Count > 0)
            {
                await ctx.OmapSetAsync(oid, set);
            }
        }
        if (c.Super is not null)
        {
            await ctx.WriteFullAsync(ctx.Target, c.Super);
        }
        var orphansAdded = c.Orphans.Where(o => o.Value).Select(o => new KeyValuePair<string, byte[]>(MetaObjects.OrphanKey(o.Key), [])).ToList();
        var orphansGone = c.Orphans.Where(o => !o.Value).Select(o => MetaObjects.OrphanKey(o.Key)).ToList();
        if (orphansGone.Count > 0)
        {
            await ctx.OmapRemoveAsync(ctx.Target, orphansGone);
        }
        if (orphansAdded.Count > 0)
        {
            await ctx.OmapSetAsync(ctx.Target, orphansAdded);
        }
        // Lock records and leases: omap of the superblock too; a removed lease takes the mount's record along.
        var superSet = c.Locks.Where(l => l.Value is not null).Select(l => new KeyValuePair<string, byte[]>(MetaObjects.LockKey(l.Key), l.Value!))
            .Concat(c.Leases.Where(l => l.Value is not null).Select(l => new KeyValuePair<string, byte[]>(MetaObjects.LeaseKey(l.Key), l.Value!))).ToList();
        var superGone = c.Locks.Where(l => l.Value is null).Select(l => MetaObjects.LockKey(l.Key))
            .Concat(c.Leases.Where(l => l.Value is null).SelectMany(l => new[] { MetaObjects.LeaseKey(l.Key), MetaObjects.MountPrefix + l.Key })).ToList();
        if (superGone.Count > 0)
        {
            await ctx.OmapRemoveAsync(ctx.Target, superGone);
        }
        if (superSet.Count > 0)
        {
            await ctx.OmapSetAsync(ctx.Target, superSet);
        }
        foreach (var (ino, data) in c.Inodes)
        {
            if (data is null)
            {
                await ctx.RemoveAsync(s.InodeOid(ino));
            }
        }
    }

    /// <summary>The filesystem's objects as the method context shows them (the state before this request).</summary>
    private sealed class Source(IMethodContext ctx, string fs) : IMetaSource
    {
        public long NowMs => ctx.NowMs;

        public ValueTask<byte[]?> GetLocksAsync(ulong ino) => ctx.OmapGetValueAsync(ctx.Target, MetaObjects.LockKey(ino));

        public async ValueTask<IReadOnlyList<KeyValuePair<ulong, byte[]>>> ListLocksAsync(ulong after, int limit)
        {
            var page = await ctx.OmapGetAsync(ctx.Target, MetaObjects.LockPrefix, after == 0 ? "" : MetaObjects.LockKey(after), limit);
            return [.. page.Select(kv => new KeyValuePair<ulong, byte[]>(MetaObjects.ParseLockKey(kv.Key), kv.Value))];
        }

        public ValueTask<byte[]?> GetLeaseAsync(string mount) => ctx.OmapGetValueAsync(ctx.Target, MetaObjects.LeaseKey(mount));

        public async ValueTask<IReadOnlyList<KeyValuePair<string, byte[]>>> ListLeasesAsync(string after, int limit)
        {
            var page = await ctx.OmapGetAsync(ctx.Target, MetaObjects.LeasePrefix, after.Length == 0 ? "" : MetaObjects.LeaseKey(after), limit);
            return [.. page.Select(kv => new KeyValuePair<string, byte[]>(kv.Key[MetaObjects.LeasePrefix.Length..], kv.Value))];
        }

        public ObjectId InodeOid(ulong ino) => new(ctx.Target.Hash, MetaObjects.Inode(fs, ino));

        private async ValueTask<byte[]?> WholeAsync(ObjectId oid) =>
            await ctx.StatAsync(oid) is { } meta ? await ctx.ReadAsync(oid, 0, (int)meta.Size) : null;

        public ValueTask<byte[]?> GetSuperAsync() => WholeAsync(ctx.Target);

        public ValueTask<byte[]?> GetInodeAsync(ulong ino) => WholeAsync(InodeOid(ino));

        public ValueTask<byte[]?> GetEntryAsync(ulong dir, string name) => ctx.OmapGetValueAsync(InodeOid(dir), name);

        public ValueTask<IReadOnlyList<KeyValuePair<string, byte[]>>> ListEntriesAsync(ulong dir, string startAfter, int limit) =>
            ctx.OmapGetAsync(InodeOid(dir), "", startAfter, limit);

        public async ValueTask<IReadOnlyList<ulong>> ListOrphansAsync(ulong after, int limit)
        {
            var page = await ctx.OmapGetAsync(ctx.Target, MetaObjects.OrphanPrefix, after == 0 ? "" : MetaObjects.OrphanKey(after), limit);
            return [.. page.Select(kv => MetaObjects.ParseOrphanKey(kv.Key))];
        }
    }
}
