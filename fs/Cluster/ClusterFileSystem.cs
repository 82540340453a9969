using System.Collections.Concurrent;
using Appliance.Client;
using Appliance.Fs.Api;
using Appliance.Fs.Meta;

namespace Appliance.Fs.Cluster;

/// <summary>How a cluster filesystem is served by one mount.</summary>
public sealed record ClusterFsOptions
{
    /// <summary>How long the kernel may cache names and attributes: another mount's change shows within this.</summary>
    public TimeSpan CacheTimeout { get; init; } = TimeSpan.FromSeconds(1);

    public int StripeSize { get; init; } = DataStriper.DefaultStripe;

    /// <summary>Where background work that failed is told (an orphan that could not be purged); none: not told.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// The cluster filesystem as one mount serves it: metadata operations go to the filesystem's metadata PG (the
/// `fsmeta` class runs them atomically there), file data goes straight to the data pool (<see cref="DataStriper"/>).
/// Node ids are inode numbers (stable, never reused); the root is 1. What this mount keeps: its open handles, the
/// size of files it has open (close-to-open: refreshed at open, grown by its own writes), and unlinked files it
/// still has open (purged at their last release). Every backend call has a deadline: the metadata calls
/// <see cref="MetaClient"/>'s, the data calls the cluster client's OpTimeout (keep both below the FUSE session's
/// operation timeout, so the application gets the call's ETIMEDOUT rather than the session's).
/// </summary>
public sealed partial class ClusterFileSystem : IFuseFileSystem
{
    private readonly MetaClient _meta;
    private readonly DataStriper _data;
    private readonly ClusterFsOptions _options;
    private readonly Func<CancellationToken, Task<StatFsReply>> _statFs;
    private readonly ConcurrentDictionary<ulong, Handle> _handles = new();
    private readonly Dictionary<ulong, OpenInode> _open = [];
    private readonly Lock _openLock = new();
    private long _nextHandle;

    /// <summary>Serves the filesystem of <paramref name="meta"/> with data in <paramref name="dataPool"/>; statfs asks
    /// <paramref name="statFs"/> for capacity and use (the CLI asks the monitors for the pools' use).</summary>
    public ClusterFileSystem(MetaClient meta, IoContext dataPool, Func<CancellationToken, Task<StatFsReply>> statFs, ClusterFsOptions? options = null)
    {
        _options = options ?? new ClusterFsOptions();
        _meta = meta;
        _data = new DataStriper(dataPool, meta.FsName, _options.StripeSize);
        _statFs = statFs;
        _purges = new PurgeQueue(this);
        _dirAttrs = new DirAttrCache(_options.CacheTimeout);
    }

    /// <summary>A file this mount has open: how many handles, its size as this mount knows it, and whether it lost
    /// its last link meanwhile (then it is purged at the last release).</summary>
    private sealed class OpenInode
    {
        public int Handles;
        public ulong Size;
        public bool Orphaned;
    }

    private abstract class Handle
    {
        public required ulong Ino;
    }

    private sealed class FileHandle : Handle
    {
        public required int Flags;
        /// <summary>Written through this handle since the last metadata update (mtime to send at flush).</summary>
        public bool Dirty;
        public MetaTime LastWrite;
    }

    private sealed class DirHandle : Handle
    {
        public ulong Parent;
        public List<DirEntry>? Listing;
    }

    private static int Errno(MetaReply r) => r.Errno;

    /// <summary>The one mapping from backend failures to errno: the cluster's refusals to what POSIX says for them,
    /// a deadline to ETIMEDOUT; anything else propagates (a bug, answered EIO by the session and logged).</summary>
    private static int ErrnoOf(Exception e) => e switch
    {
        OsdRequestTimeoutException or ClusterUnavailableException => FsErrno.ETIMEDOUT,
        OperationCanceledException => FsErrno.EINTR,
        QuotaExceededException => 122, // EDQUOT
        ClusterFullException => FsErrno.ENOSPC,
        PermissionDeniedException => FsErrno.EACCES,
        BlocklistedException => 108, // ESHUTDOWN: this mount was fenced
        ObjectIoException => FsErrno.EIO,
        MetaFormatException => FsErrno.EIO,
        InvalidRequestException { Result: -27 } => FsErrno.EFBIG,
        _ => 0,
    };

    /// <summary>Runs a backend call and turns the cluster's typed failures into errnos (in one place).</summary>
    private static async ValueTask<FsResult<T>> GuardAsync<T>(Func<ValueTask<FsResult<T>>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception e) when (ErrnoOf(e) is var errno and > 0)
        {
            return new FsError(errno);
        }
    }

    private static async ValueTask<FsError> GuardAsync(Func<ValueTask<FsError>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception e) when (ErrnoOf(e) is var errno and > 0)
        {
            return new FsError(errno);
        }
    }

    private static MetaTime Now() => MetaTime.FromDateTime(DateTime.UtcNow);

    private MetaRequest Req(MetaOp op, FuseContext ctx) => new(op, Callers.Of(ctx), Now());

    /// <summary>Where this mount tells the others what it changed (<see cref="Cluster.Coherence"/>); none: the others
    /// see changes when their cached names and attributes expire.</summary>
    public Coherence? Coherence
    {
        get => _coherence;
        set
        {
            _coherence = value;
            if (value is not null)
            {
                value.BeforeInvalidate = _dirAttrs.Invalidate;
            }
        }
    }

    private Coherence? _coherence;

    private async Task<MetaReply> CallAsync(MetaRequest req, CancellationToken ct)
    {
        MetaReply reply;
        if (MetaOps.IsReadOnly(req.Op))
        {
            reply = await _meta.CallAsync(req, ct);
        }
        else
        {
            var ticket = _dirAttrs.Begin(req);
            MetaReply? answered = null;
            try
            {
                reply = answered = await _meta.CallAsync(req, ct);
            }
            finally
            {
                _dirAttrs.End(ticket, answered);
            }
        }
        if (reply.IsOk && Coherence is { } coherence && !MetaOps.IsReadOnly(req.Op))
        {
            coherence.Publish(ChangedNames(req), ChangedInodes(req, reply));
        }
        return reply;
    }

    /// <summary>The names a successful change made, removed or replaced.</summary>
    private static IEnumerable<(ulong, string)> ChangedNames(MetaRequest req) => req.Op switch
    {
        MetaOp.Make or MetaOp.Unlink or MetaOp.RmDir => [(req.Ino, req.Name)],
        MetaOp.Rename => [(req.Ino, req.Name), (req.Ino2, req.Name2)],
        MetaOp.Link => [(req.Ino2, req.Name2)],
        _ => [],
    };

    /// <summary>The inodes whose attributes (or, for a file, data) a successful change touched: the request's
    /// inodes (a directory's times and counts change with its entries) and the one the reply names.</summary>
    private static IEnumerable<ulong> ChangedInodes(MetaRequest req, MetaReply reply)
    {
        if (req.Ino != 0)
        {
            yield return req.Ino;
        }
        if (req.Ino2 != 0)
        {
            yield return req.Ino2;
        }
        if (reply.Inode is { } n && n.Ino != req.Ino && n.Ino != req.Ino2)
        {
            yield return n.Ino;
        }
    }

    private static Timestamp T(MetaTime t) => new(t.Seconds, t.Nanoseconds);

    private static MetaTime M(Timestamp t) => new(t.Seconds, t.Nanoseconds);

    private FileAttr AttrOf(Inode n)
    {
        var size = n.IsDir ? 4096UL : n.StatSize;
        if (n.IsReg)
        {
            lock (_openLock)
            {
                // This mount's writes may be ahead of what the reply carried (a write racing this call).
                if (_open.TryGetValue(n.Ino, out var o) && o.Size > size)
                {
                    size = o.Size;
                }
            }
        }
        return new FileAttr
        {
            Ino = n.Ino,
            Size = size,
            Blocks = (size + 511) / 512,
            Atime = T(n.Atime),
            Mtime = T(n.Mtime),
            Ctime = T(n.Ctime),
            Mode = n.Mode,
            Nlink = n.Nlink,
            Uid = n.Uid,
            Gid = n.Gid,
            Rdev = n.Rdev,
            BlockSize = 1 << 20,
        };
    }

    private Entry EntryOf(Inode n) => new(n.Ino, 1, AttrOf(n), _options.CacheTimeout, _options.CacheTimeout);

    private AttrReply AttrReplyOf(Inode n) => new(AttrOf(n), _options.CacheTimeout);

    /// <summary>Lookups are not counted: an inode's life is decided by its links and this mount's open handles
    /// (the metadata PG holds the truth), so the kernel's references need no bookkeeping here.</summary>
    public void Forget(ulong nodeId, ulong nlookup)
    {
    }

    public ValueTask<FsResult<StatFsReply>> StatFsAsync(FuseContext ctx, ulong nodeId, CancellationToken ct) => GuardAsync<StatFsReply>(async () =>
    {
        var space = await _statFs(ct);
        var r = await CallAsync(Req(MetaOp.StatFs, ctx), ct);
        if (!r.IsOk)
        {
            return new FsError(Errno(r));
        }
        var files = Math.Max(space.Files, r.Inodes + space.FilesFree);
        return space with { Files = files, FilesFree = files - r.Inodes, NameMax = MetaOps.NameMax };
    });
}
