namespace Appliance.Wire.Messenger;

/// <summary>Where a connection is cut by <see cref="TransportFaults"/>.</summary>
public enum FaultPoint
{
    /// <summary>Before a frame goes out: the frame is lost with the connection (the session resends it).</summary>
    BeforeSend,
    /// <summary>Right after a frame went out: the peer may or may not read it before it sees the reset.</summary>
    AfterSend,
    /// <summary>A frame arrived but is dropped with the connection before anything acts on it.</summary>
    OnReceive,
}

/// <summary>
/// Opt-in fault injection in the transport (there is no netem where the tests run): with the given probability per
/// frame a connection is aborted — a TCP reset, as a failing network or a dying peer produces — before a frame is
/// sent, after it was sent, or when one was received. The peer sees the connection drop; sessions reconnect and
/// resend through their normal paths. Reached through <see cref="MessengerOptions.Faults"/>; null (the default)
/// costs one null check per frame. One instance may be shared by many connections (thread-safe); seeded, so a
/// failing run's fault pattern can be approached again (exactly only where the frames' order is deterministic).
/// </summary>
public sealed class TransportFaults(int seed)
{
    private readonly Random _random = new(seed);
    private readonly Lock _lock = new();
    private long _cuts;
    private volatile bool _enabled = true;

    /// <summary>Probability per frame of cutting before it is sent.</summary>
    public double CutBeforeSend { get; init; }

    /// <summary>Probability per frame of cutting right after it was sent.</summary>
    public double CutAfterSend { get; init; }

    /// <summary>Probability per received frame of cutting instead of acting on it.</summary>
    public double CutOnReceive { get; init; }

    /// <summary>Faults are injected only while enabled (a test turns them off to check the outcome on a quiet
    /// network).</summary>
    public bool Enabled
    {
        get => _enabled;
        set => _enabled = value;
    }

    /// <summary>Connections cut so far.</summary>
    public long Cuts => Interlocked.Read(ref _cuts);

    /// <summary>Rolls the dice for one frame at <paramref name="point"/>: true when the connection is to be cut.</summary>
    internal bool ShouldCut(FaultPoint point)
    {
        var p = point switch
        {
            FaultPoint.BeforeSend => CutBeforeSend,
            FaultPoint.AfterSend => CutAfterSend,
            _ => CutOnReceive,
        };
        if (!_enabled || p <= 0)
        {
            return false;
        }
        bool cut;
        lock (_lock)
        {
            cut = _random.NextDouble() < p;
        }
        if (cut)
        {
            Interlocked.Increment(ref _cuts);
        }
        return cut;
    }
}
