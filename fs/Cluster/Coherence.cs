using System.Buffers.Binary;
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
/// gathered while the previous notify was out), so a filesystem call never waits for other mounts. A mount that is
/// the only one watching sends nothing: a notify's reply lists the watchers, and when it lists none but this mount,
/// publishing stops until another mount shows itself — every mount announces itself with an empty notify when it
/// starts watching (acknowledged only after the receiver has marked that it has company), and any notify from
/// another mount, or a watch of ours that had to be registered again, turns publishing back on. A notify is
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

    /// <summary>Told which inodes another mount changed (the directories of changed names included) before the
    /// kernel's cache is (the filesystem's own caches must not answer the kernel's next question from before).</summary>
    public Action<IReadOnlyCollection<ulong>>? BeforeInvalidate { get; set; }

    /// <summary>Notifies sent, and notifies from other mounts applied (for tests and statistics).</summary>
    public long Sent => Interlocked.Read(ref _sent);

    public long Applied => Interlocked.Read(ref _applied);

    private long _sent;
    private long _applied;
    private long _skipped;

    /// <summary>Changes not sent because no other mount watched (for tests and statistics).</summary>
    public long Skipped => Interlocked.Read(ref _skipped);

    /// <summary>Whether another mount may be watching: set by every sign of one (its notify, our watch registered
    /// again, the start), cleared only by a notify whose reply listed no other watcher and during which no such sign
    /// came (<see cref="_company"/> counts the signs).</summary>
    private volatile bool _others = true;
    private long _company;
    private long _ownDelivered;

    /// <summary>Whether changes go out to other mounts now (false: this mount is the only one watching).</summary>
    public bool HasCompany => _others;

    private void MarkCompany()
    {
        Interlocked.Increment(ref _company);
        _others = true;
    }

    /// <summary>Watches the filesystem's watch object (made if missing) and starts applying other mounts' changes to
    /// <paramref name="session"/>'s kernel cache, and sending this mount's.</summary>
    public async Task StartAsync(FuseSession session, CancellationToken ct)
    {
        await _meta.ExecuteAsync(_object, [OsdOp.Create(exclusive: false)], null, ct);
        _watch = await _meta.WatchAsync(_object, OnNotifyAsync, e =>
        {
            // We may have missed another mount's announcement meanwhile: publish again until a reply says otherwise.
            MarkCompany();
            _log($"coherence: the watch on {_object} was lost for a while ({e.Message}); other mounts' changes show within the cache timeout meanwhile");
        }, ct);
        _applier = Task.Run(() => ApplyLoopAsync(session));
        // The announcement: every other mount has marked its company once this returns (they acknowledge after), and
        // its reply says whether there are any.
        try
        {
            await SendAsync([], [], ct);
        }
        catch (ClusterClientException e)
        {
            // Publishing stays on (as it starts): only what other mounts learn of us late is at stake.
            _log($"coherence: announcing this mount on {_object} failed ({e.Message}); a mount that found itself alone tells this one its changes only once this one's first notify reaches it (until then they show here when the cache expires)");
        }
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
        if (!_others)
        {
            // The only mount watching: no kernel cache but ours holds what changed. A mount that starts watching now
            // announces itself before it serves anything it cached meanwhile... except what it looked up between its
            // kernel mount and that announcement, which the cache timeout bounds, as for any lost notify.
            Interlocked.Increment(ref _skipped);
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
                await SendAsync(entries, inodes, _stop.Token);
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
            if (sender == _me)
            {
                Interlocked.Increment(ref _ownDelivered);
            }
            else
            {
                // Marked before the acknowledgement (sent when this returns): a mount whose announcement returned
                // knows every watcher publishes to it from then on.
                MarkCompany();
                if (entries.Count > 0 || inodes.Count > 0)
                {
                    _received.Writer.TryWrite((entries, inodes));
                }
            }
        }
        catch (MetaFormatException e)
        {
            _log($"coherence: a notify on {_object} does not decode ({e.Message}); ignored");
        }
        return ValueTask.CompletedTask;
    }

    /// <summary>One notify; its reply (u32 count, then per watcher u64 cookie and u8 acknowledged) says whether any
    /// watcher but this mount's own is left, and if none is and no other mount showed itself meanwhile, publishing
    /// stops.</summary>
    private async Task SendAsync(IReadOnlyCollection<(ulong, string)> entries, IReadOnlyCollection<ulong> inodes, CancellationToken ct)
    {
        var signs = Interlocked.Read(ref _company);
        var own = Interlocked.Read(ref _ownDelivered);
        var reply = await _meta.NotifyAsync(_object, Encode(_me, entries, inodes), NotifyWait, ct);
        Interlocked.Increment(ref _sent);
        var data = reply.Outputs.Count > 0 ? reply.Outputs[0].Data.Span : default;
        if (data.Length < 4 || _watch is not { } watch)
        {
            return;
        }
        var count = (int)BinaryPrimitives.ReadUInt32LittleEndian(data);
        var others = 0;
        for (var i = 0; i < count && 4 + (i * 9) + 9 <= data.Length; i++)
        {
            if (BinaryPrimitives.ReadUInt64LittleEndian(data[(4 + (i * 9))..]) != watch.Cookie)
            {
                others++;
            }
        }
        // Our own notify must have reached our own watch (delivered before the OSD's reply): a watch cookie is unique
        // per client only, and another client's watch under the same cookie replaces ours at the OSD, so a reply
        // listing "our" cookie alone may mean that the other mount holds it.
        var ownCame = Interlocked.Read(ref _ownDelivered) > own;
        lock (_lock)
        {
            // Lost the race with another mount's announcement (it came while this notify was out): keep publishing.
            if (others == 0 && ownCame && Interlocked.Read(ref _company) == signs)
            {
                _others = false;
            }
            else
            {
                _others = true;
            }
        }
    }

    private async Task ApplyLoopAsync(FuseSession session)
    {
        try
        {
            await foreach (var (entries, inodes) in _received.Reader.ReadAllAsync(_stop.Token))
            {
                BeforeInvalidate?.Invoke([.. inodes, .. entries.Select(e => e.Item1)]);
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
