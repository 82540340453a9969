using Appliance.Client;
using Appliance.Osd.Protocol;

namespace Appliance.BlockDev.Images.Cluster;

/// <summary>Has the monitors blocklist a client instance (<c>entity:nonce</c>) and returns once the given client's
/// osdmap lists it, so every request that client sends after carries an epoch at which the OSDs refuse the fenced
/// instance.</summary>
public delegate Task FenceAsync(string instance, CancellationToken ct);

/// <summary>Who takes image locks, and how: the identity written into the lock and the lease's length.</summary>
public sealed record LockIdentity(string Entity, string Instance, string Host, string Owner)
{
    public LockHolder Holder() => new(Instance, Entity, Host, Owner, 0);

    /// <summary>Whether <paramref name="h"/> is this identity in an earlier life (a restarted server): same entity,
    /// same host, same owner (the address it serves on), another instance.</summary>
    public bool IsEarlierSelf(LockHolder h) => h.Entity == Entity && h.Host == Host && h.Owner == Owner && h.Instance != Instance;
}

/// <summary>The image lock was not taken: <see cref="Holder"/> holds it (a live lease).</summary>
public sealed class ImageLockedException(string image, LockHolder holder, long remainingMs)
    : Exception($"image {image} is held by {holder} (lease ends in {Math.Max(0, remainingMs) / 1000.0:0.#} s unless renewed); " +
        "wait for that server to stop serving it, or break its lock with --force")
{
    public LockHolder Holder { get; } = holder;
}

/// <summary>
/// The exclusive lock of one image, held as a lease in its header (method class "lock"): taken when a server opens
/// the image for writing, renewed in the background at a third of the lease, released on close. A holder whose lease
/// ran out, or this identity's earlier life, or any holder with <c>force</c>, is fenced first (blocklisted by the
/// monitors, see <see cref="FenceAsync"/>) and only then taken over, so its late writes are refused by the OSDs.
/// </summary>
internal sealed class ImageLock : IAsyncDisposable
{
    private readonly IoContext _io;
    private readonly string _header;
    private readonly string _image;
    private readonly LockIdentity _me;
    private readonly TimeSpan _lease;
    private readonly CancellationTokenSource _stop = new();
    private Task _renewals = Task.CompletedTask;
    private volatile string? _lost;

    private ImageLock(IoContext io, string header, string image, LockIdentity me, TimeSpan lease)
    {
        _io = io;
        _header = header;
        _image = image;
        _me = me;
        _lease = lease;
    }

    /// <summary>Null while held; otherwise why this server lost the lock (writes must stop).</summary>
    public string? Lost => _lost;

    public static async Task<LockReply> GetAsync(IoContext io, string header, CancellationToken ct) =>
        LockProtocol.DecodeReply((await io.CallAsync(header, LockProtocol.Class, "get", ReadOnlyMemory<byte>.Empty, ct)).Span);

    /// <summary>Takes the lock (see the class remarks), or throws <see cref="ImageLockedException"/>.</summary>
    public static async Task<ImageLock> TakeAsync(IoContext io, string header, string image, LockIdentity me, TimeSpan lease, FenceAsync fence,
        bool force, CancellationToken ct)
    {
        var l = new ImageLock(io, header, image, me, lease);
        var reply = await l.AcquireAsync("", ct);
        if (reply.Status != LockStatus.Ok)
        {
            var holder = reply.Holder!;
            if (!(reply.Expired || me.IsEarlierSelf(holder) || force))
            {
                throw new ImageLockedException(image, holder, holder.ExpiresMs - reply.NowMs);
            }
            // Fence before taking over: once the map that blocklists it is ours, every OSD that sees our next
            // request refuses the old holder's writes (they wait for our epoch first).
            await fence(holder.Instance, ct);
            reply = await l.AcquireAsync(holder.Instance, ct);
            if (reply.Status != LockStatus.Ok)
            {
                // Lost the race: another server fenced the same holder and took the lock first.
                throw new ImageLockedException(image, reply.Holder!, reply.Holder!.ExpiresMs - reply.NowMs);
            }
        }
        l._renewals = l.RenewLoopAsync();
        return l;
    }

    private async Task<LockReply> AcquireAsync(string breakInstance, CancellationToken ct)
    {
        var input = LockProtocol.EncodeAcquire(new LockProtocol.AcquireRequest(_me.Holder(), (long)_lease.TotalMilliseconds, breakInstance));
        return LockProtocol.DecodeReply((await _io.CallAsync(_header, LockProtocol.Class, "acquire", input, ct)).Span);
    }

    private async Task RenewLoopAsync()
    {
        var input = LockProtocol.EncodeInstance(_me.Instance, (long)_lease.TotalMilliseconds);
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(_lease / 3, _stop.Token);
                var reply = LockProtocol.DecodeReply((await _io.CallAsync(_header, LockProtocol.Class, "renew", input, _stop.Token)).Span);
                if (reply.Status != LockStatus.Ok)
                {
                    _lost = reply.Holder is { } h ? $"the lock of image {_image} was taken over by {h}" : $"the lock of image {_image} was released by someone else";
                    return;
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (BlocklistedException)
            {
                _lost = $"this server ({_me.Instance}) was blocklisted: another server took image {_image} over";
                return;
            }
            catch (ClusterClientException)
            {
                // The cluster is slow or unreachable: try again. If the lease runs out meanwhile, a server that takes
                // over fences us first, so our writes are refused rather than mixed with its.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        await _renewals;
        if (_lost is null)
        {
            try
            {
                using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await _io.CallAsync(_header, LockProtocol.Class, "release", LockProtocol.EncodeInstance(_me.Instance, 1), limit.Token);
            }
            catch (Exception e) when (e is ClusterClientException or OperationCanceledException)
            {
                // The lease runs out by itself; a later server fences us and takes it.
            }
        }
        _stop.Dispose();
    }
}
