using System.Threading.Channels;
using Appliance.Client;
using Appliance.Fs.Meta;
using Appliance.Fs.Session;
using Appliance.Osd.Protocol;

namespace Appliance.Fs.Cluster;

/// <summary>
/// Cache coherence between the mounts of one filesystem: after a metadata change succeeds, the mount that made it
/// tells every other mount which names and inodes changed (a notify on the filesystem's watch object
/// <see cref="MetaObjects.Watch"/>, which every mount watches), and each of them drops those from its kernel's cache
/// (FUSE_NOTIFY_INVAL_ENTRY / INVAL_INODE). So another mount sees a change as soon as the notify reaches it, not
/// when its cached entry expires (<see cref="ClusterFsOptions.CacheTimeout"/> stays the bound when a notify is lost).
/// </summary>
/// <remarks>
/// Nothing waits on it: a change is published to a queue and notifies go out in batches from one loop (whatever
/// gathered while the previous notify was out), so a filesystem call never waits for other mounts. A notify is
/// acknowledged at once and applied to the kernel from another loop: the kernel takes a directory's lock for an
/// entry's invalidation, which a call of this mount may hold while it waits for the cluster. The watch object is
/// not the superblock, whose lock orders every metadata operation.
/// </remarks>
public sealed class Coherence : IAsyncDisposable
{
    private const byte FormatVersion = 1;
    private static readonly TimeSpan NotifyWait = TimeSpan.FromSeconds(2);

    private readonly IoContext _meta;
    private readonly string _object;
    private readonly string _me;
    private readonly Action<string> _log;
    private readonly Lock _lock = new();
    private HashSet<(ulong Dir, string Name)> _entries = [];
    private HashSet<ulong> _inodes = [];
    private readonly SemaphoreSlim _pending = new(0, 1);
    private readonly Channel<(List<(ulong, string)> Entries, List<ulong> Inodes)> _received =
        Channel.CreateBounded<(List<(ulong, string)>, List<ulong>)>(new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.DropOldest });
    private readonly CancellationTokenSource _stop = new();
    private ObjectWatch? _watch;
    private Task _sender = Task.CompletedTask;
    private Task _applier = Task.CompletedTask;

    /// <param name="meta">The metadata pool, placed by the filesystem's locator (<see cref="MetaClient.Pool"/>).</param>
    /// <param name="fsName">The filesystem.</param>
    /// <param name="mountId">This mount's id (its own notifies come back to it and are skipped).</param>
    /// <param name="log">Where failures to notify or to watch are told (they only delay what other mounts see).</param>
    public Coherence(IoContext meta, string fsName, string mountId, Action<string> log)
    {
        _meta = meta;
        _object = MetaObjects.Watch(fsName);
        _me = mountId;
        _log = log;
    }

    /// <summary>Notifies sent, and notifies from other mounts applied (for tests and statistics).</summary>
    public long Sent => Interlocked.Read(ref _sent);

    public long Applied => Interlocked.Read(ref _applied);

    private long _sent;
    private long _applied;

    /// <summary>Watches the filesystem's watch object (made if missing) and starts applying other mounts' changes to
    /// <paramref name="session"/>'s kernel cache, and sending this mount's.</summary>
    public async Task StartAsync(FuseSession session, CancellationToken ct)
    {
        await _meta.ExecuteAsync(_object, [OsdOp.Create(exclusive: false)], null, ct);
        _watch = await _meta.WatchAsync(_object, OnNotifyAsync, e => _log($"coherence: the watch on {_object} was lost for a while ({e.Message}); other mounts' changes show within the cache timeout meanwhile"), ct);
        _applier = Task.Run(() => ApplyLoopAsync(session));
        _sender = Task.Run(SendLoopAsync);
    }

    /// <summary>Tells the other mounts that these names and inodes changed (returns at once).</summary>
    public void Publish(IEnumerable<(ulong Dir, string Name)> entries, IEnumerable<ulong> inodes)
    {
        if (_stop.IsCancellationRequested)
        {
            // Disposed (a call that was in flight while the mount ended): nobody to tell any more.
            return;
        }
        lock (_lock)
        {
            _entries.UnionWith(entries);
            _inodes.UnionWith(inodes);
        }
        if (_pending.CurrentCount == 0)
        {
            try
            {
                _pending.Release();
            }
            catch (SemaphoreFullException)
            {
                // Already signalled.
            }
        }
    }

    private async Task SendLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await _pending.WaitAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            HashSet<(ulong, string)> entries;
            HashSet<ulong> inodes;
            lock (_lock)
            {
                (entries, _entries) = (_entries, []);
                (inodes, _inodes) = (_inodes, []);
            }
            if (entries.Count == 0 && inodes.Count == 0)
            {
                continue;
            }
            try
            {
                await _meta.NotifyAsync(_object, Encode(_me, entries, inodes), NotifyWait, _stop.Token);
                Interlocked.Increment(ref _sent);
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                _log($"coherence: a notify of {entries.Count} name(s) and {inodes.Count} inode(s) failed ({e.Message}); other mounts see the change within the cache timeout");
            }
        }
    }

    private ValueTask OnNotifyAsync(WatchNotifyMessage message)
    {
        try
        {
            var (sender, entries, inodes) = Decode(message.Payload.Span);
            if (sender != _me)
            {
                _received.Writer.TryWrite((entries, inodes));
            }
        }
        catch (MetaFormatException e)
        {
            _log($"coherence: a notify on {_object} does not decode ({e.Message}); ignored");
        }
        return ValueTask.CompletedTask;
    }

    private async Task ApplyLoopAsync(FuseSession session)
    {
        try
        {
            await foreach (var (entries, inodes) in _received.Reader.ReadAllAsync(_stop.Token))
            {
                foreach (var (dir, name) in entries)
                {
                    session.NotifyInvalEntry(dir, name);
                }
                foreach (var ino in inodes)
                {
                    session.NotifyInvalInode(ino);
                }
                Interlocked.Increment(ref _applied);
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e) when (e is ObjectDisposedException or IOException)
        {
            // The session ended under us.
        }
    }

    internal static byte[] Encode(string sender, IReadOnlyCollection<(ulong Dir, string Name)> entries, IReadOnlyCollection<ulong> inodes)
    {
        var w = new MetaWriter();
        w.U8(FormatVersion);
        w.String(sender);
        w.U32((uint)entries.Count);
        foreach (var (dir, name) in entries)
        {
            w.U64(dir);
            w.String(name);
        }
        w.U32((uint)inodes.Count);
        foreach (var ino in inodes)
        {
            w.U64(ino);
        }
        return w.ToArray();
    }

    internal static (string Sender, List<(ulong, string)> Entries, List<ulong> Inodes) Decode(ReadOnlySpan<byte> payload)
    {
        var r = new MetaReader(payload);
        r.Version(FormatVersion, "a coherence notify");
        var sender = r.String();
        var entries = new List<(ulong, string)>();
        for (var n = r.U32(); n > 0; n--)
        {
            entries.Add((r.U64(), r.String()));
        }
        var inodes = new List<ulong>();
        for (var n = r.U32(); n > 0; n--)
        {
            inodes.Add(r.U64());
        }
        return (sender, entries, inodes);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _received.Writer.TryComplete();
        await Task.WhenAll(_sender, _applier);
        if (_watch is not null)
        {
            try
            {
                await _watch.DisposeAsync();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                _log($"coherence: unwatching {_object} failed ({e.Message})");
            }
        }
        // _stop and _pending stay undisposed: a call still in flight may publish (and is ignored) after this.
    }
}
