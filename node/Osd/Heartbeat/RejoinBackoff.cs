namespace Appliance.Osd.Heartbeat;

/// <summary>
/// How long an OSD marked down while it runs waits before it boots again: <see cref="Min"/> the first time, doubling
/// each time after, up to <see cref="Max"/>; back to <see cref="Min"/> once it has stayed up for
/// <see cref="StableAfter"/>. A flapping OSD (its heartbeats late, its disk slow) thus marks itself up at most every
/// <see cref="Max"/>, not on every map, and cannot churn the maps.
/// </summary>
public sealed class RejoinBackoff(TimeProvider time)
{
    private TimeSpan _next;
    private long _upSince = -1;

    public TimeSpan Min { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan Max { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan StableAfter { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The OSD is up (its boot was accepted).</summary>
    public void Up() => _upSince = time.GetTimestamp();

    /// <summary>The OSD found itself marked down: how long to wait before booting again.</summary>
    public TimeSpan MarkedDown()
    {
        if (_next == TimeSpan.Zero || (_upSince >= 0 && time.GetElapsedTime(_upSince) >= StableAfter))
        {
            _next = Min;
        }
        _upSince = -1;
        var wait = _next;
        _next = TimeSpan.FromTicks(Math.Min(_next.Ticks * 2, Max.Ticks));
        return wait;
    }
}
