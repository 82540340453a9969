using Appliance.Client;
using Appliance.Fs.Meta;

namespace Appliance.Fs.Cluster;

/// <summary>
/// A mount's lease in its filesystem's metadata (<see cref="MountLease"/>, judged by the metadata PG's clock): taken
/// at <see cref="StartAsync"/>, renewed every third of its length while the mount runs, ended at
/// <see cref="DisposeAsync"/> (an orderly unmount: every lock of the mount released, its lease and mount record gone).
/// A mount that stops renewing (killed, hung, cut off) loses its locks once the lease runs out: the next lock
/// operation of another mount that meets them drops them, and every live mount sweeps the leases that ran out about
/// once per lease length. A mount that finds its own lease ran out (it was away too long) ends it and starts anew:
/// the locks it held are gone (they may be someone else's by now).
/// </summary>
public sealed class LeaseKeeper : IAsyncDisposable
{
    /// <summary>Default lease: a killed mount's locks go to others within this (plus a renewal's deadline).</summary>
    public static readonly TimeSpan DefaultLease = TimeSpan.FromSeconds(30);

    private readonly MetaClient _meta;
    private readonly Action<string> _log;
    private readonly CancellationTokenSource _stop = new();
    private Task _loop = Task.CompletedTask;
    private long _generation;

    public LeaseKeeper(MetaClient meta, string mountId, TimeSpan lease, Action<string> log)
    {
        if (lease <= TimeSpan.Zero || lease.TotalMilliseconds > MountLease.MaxLeaseMs)
        {
            throw new ArgumentOutOfRangeException(nameof(lease), $"a lease is 1 ms to {MountLease.MaxLeaseMs / 1000} s");
        }
        _meta = meta;
        MountId = mountId;
        Lease = lease;
        _log = log;
    }

    /// <summary>The mount's id: its locks' holder in the metadata, the key of its lease and mount record.</summary>
    public string MountId { get; }

    public TimeSpan Lease { get; }

    /// <summary>Counts the leases this mount started: a change means the locks it held before are gone.</summary>
    public long Generation => Interlocked.Read(ref _generation);

    /// <summary>Called when this mount's lease had run out and was started anew (its locks are gone).</summary>
    public event Action? Lost;

    private MetaRequest Req(MetaOp op) => new(op, Caller.Root, MetaTime.FromDateTime(DateTime.UtcNow)) { Name = MountId, Limit = (uint)Lease.TotalMilliseconds };

    /// <summary>Takes the lease (a lease of this id that ran out is ended first) and starts renewing it.</summary>
    public async Task StartAsync(CancellationToken ct)
    {
        await BeginAsync(ct);
        _loop = Task.Run(() => RenewLoopAsync(_stop.Token), CancellationToken.None);
    }

    private async Task BeginAsync(CancellationToken ct)
    {
        var r = await _meta.CallAsync(Req(MetaOp.RenewLease) with { Flags = 1 }, ct);
        if (r.Errno == Errno.ESTALE)
        {
            await EndAsync(ct);
            r = await _meta.CallAsync(Req(MetaOp.RenewLease) with { Flags = 1 }, ct);
        }
        if (!r.IsOk)
        {
            throw new InvalidOperationException($"taking the lease of mount {MountId} failed with errno {r.Errno}");
        }
        Interlocked.Increment(ref _generation);
    }

    private async Task RenewLoopAsync(CancellationToken ct)
    {
        var period = Lease / 3;
        var sweepEvery = 3; // about once per lease length
        for (var round = 1; !ct.IsCancellationRequested; round++)
        {
            try
            {
                await Task.Delay(period, ct);
                var r = await _meta.CallAsync(Req(MetaOp.RenewLease), ct);
                if (r.Errno == Errno.ESTALE)
                {
                    _log($"the lease of mount {MountId} ran out before it was renewed (the cluster was out of reach for {Lease.TotalSeconds:0.#} s or more): its locks were released; starting a new lease");
                    await EndAsync(ct);
                    await BeginAsync(ct);
                    Lost?.Invoke();
                }
                else if (!r.IsOk)
                {
                    _log($"renewing the lease of mount {MountId} failed with errno {r.Errno}");
                }
                if (round % sweepEvery == 0)
                {
                    await SweepAsync(ct);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is ClusterClientException or MetaFormatException or InvalidOperationException)
            {
                // Out of reach for now (each call has its deadline): try again at the next round, well within the lease.
                _log($"renewing the lease of mount {MountId}: {e.Message}");
            }
        }
    }

    /// <summary>Releases the locks of every mount whose lease ran out, and their leases and mount records.</summary>
    public async Task SweepAsync(CancellationToken ct)
    {
        var r = await _meta.CallAsync(new MetaRequest(MetaOp.SweepLeases, Caller.Root, MetaTime.FromDateTime(DateTime.UtcNow)), ct);
        while (r.IsOk && r.More)
        {
            r = await _meta.CallAsync(new MetaRequest(MetaOp.SweepLeases, Caller.Root, MetaTime.FromDateTime(DateTime.UtcNow)) { Ino = r.Next }, ct);
        }
    }

    private async Task EndAsync(CancellationToken ct)
    {
        var r = await _meta.CallAsync(Req(MetaOp.EndLease), ct);
        while (r.IsOk && r.More)
        {
            r = await _meta.CallAsync(Req(MetaOp.EndLease) with { Ino = r.Next }, ct);
        }
    }

    /// <summary>Stops renewing and ends the lease: every lock of this mount released, its lease and mount record
    /// removed (bounded by the metadata calls' deadline; a failure leaves them to run out).</summary>
    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        await _loop;
        try
        {
            await EndAsync(CancellationToken.None);
        }
        catch (Exception e) when (e is ClusterClientException or MetaFormatException)
        {
            _log($"ending the lease of mount {MountId}: {e.Message} (its locks go when the lease runs out)");
        }
        _stop.Dispose();
    }
}
