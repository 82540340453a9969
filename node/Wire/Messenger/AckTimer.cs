namespace Appliance.Wire.Messenger;

/// <summary>
/// The explicit acknowledgements of every session of a process that uses one interval: one periodic timer, running
/// only while some session has a delivery that no outgoing message acknowledged. A session with such a delivery is
/// put on the list (once); at each tick it sends an ack if a delivery it had at the previous tick is still not
/// acknowledged (so an ack goes out within one to two intervals, and none when a reply carried it), and stays on the
/// list while anything it delivered is unacknowledged. A timer per connection re-armed at each delivery cost a
/// timer-thread wake-up and a thread-pool hop per connection every interval under load.
/// </summary>
internal sealed class AckTimer
{
    private static readonly Lock TimersLock = new();
    private static readonly Dictionary<TimeSpan, AckTimer> Timers = [];

    private readonly TimeSpan _interval;
    private readonly Timer _timer;
    private readonly Lock _lock = new();
    private List<MessageSession> _sessions = [];
    private bool _running;
    private int _ticking;

    private AckTimer(TimeSpan interval)
    {
        _interval = interval;
        _timer = new Timer(_ => Tick(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The process's timer for <paramref name="interval"/>.</summary>
    public static AckTimer For(TimeSpan interval)
    {
        lock (TimersLock)
        {
            if (!Timers.TryGetValue(interval, out var timer))
            {
                timer = new AckTimer(interval);
                Timers[interval] = timer;
            }
            return timer;
        }
    }

    /// <summary>Puts a session on the list (the caller made sure it is not on it already).</summary>
    public void Add(MessageSession session)
    {
        lock (_lock)
        {
            _sessions.Add(session);
            if (!_running)
            {
                _running = true;
                _timer.Change(_interval, _interval);
            }
        }
    }

    private void Tick()
    {
        // A tick that runs late must not overlap the next: the second one just skips.
        if (Interlocked.Exchange(ref _ticking, 1) == 1)
        {
            return;
        }
        try
        {
            List<MessageSession> due;
            lock (_lock)
            {
                if (_sessions.Count == 0)
                {
                    _running = false;
                    _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                    return;
                }
                due = _sessions;
                _sessions = [];
            }
            List<MessageSession>? again = null;
            foreach (var s in due)
            {
                if (s.AckTick())
                {
                    (again ??= []).Add(s);
                }
            }
            if (again is not null)
            {
                lock (_lock)
                {
                    _sessions.AddRange(again);
                }
            }
        }
        finally
        {
            Volatile.Write(ref _ticking, 0);
        }
    }
}
