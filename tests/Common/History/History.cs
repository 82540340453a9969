namespace Appliance.Tests.Common.History;

/// <summary>What an operation on one object does, in the model the checker judges against: a register that is set
/// whole (<see cref="WriteFull"/>), extended (<see cref="Append"/>) and read whole (<see cref="Read"/>; a missing
/// object reads as empty).</summary>
public enum OpKind
{
    WriteFull,
    Append,
    Read,
}

/// <summary>How an operation ended, as its caller saw it.</summary>
public enum OpOutcome
{
    /// <summary>Acknowledged (a read: with the value it returned).</summary>
    Ok,
    /// <summary>Definitely refused: it changed nothing (a failed guard, say). It is left out of the history.</summary>
    Failed,
    /// <summary>No outcome known (timed out, connection lost): it may take effect at any point after its invocation,
    /// or never — as Knossos's and Porcupine's "info" operations.</summary>
    Unknown,
}

/// <summary>One operation of a history: who did it, on what, with which value (the data written, or the data a read
/// returned), and when it was invoked and completed on the recorder's clock (<see cref="long.MaxValue"/> when its
/// outcome is unknown).</summary>
public sealed record HistoryOp(int Id, int Process, string Object, OpKind Kind, string Value, long Invoked, long Completed, OpOutcome Outcome)
{
    public override string ToString() =>
        $"#{Id} p{Process} {Kind}({Shorten(Value)}) [{Invoked}, {(Completed == long.MaxValue ? "∞" : Completed.ToString(System.Globalization.CultureInfo.InvariantCulture))}] {Outcome}";

    internal static string Shorten(string value) => value.Length <= 60 ? $"\"{value}\"" : $"\"{value[..25]}…{value[^25..]}\" ({value.Length} chars)";
}

/// <summary>
/// Records a concurrent history: each operation's invocation and completion, stamped with one monotonic counter shared
/// by every process, so that an operation that completed before another was invoked has the smaller stamps (the
/// real-time order linearizability must respect). Thread-safe.
/// </summary>
public sealed class HistoryRecorder
{
    private readonly Lock _lock = new();
    private readonly List<HistoryOp> _ops = [];
    private long _clock;

    /// <summary>An invoked operation waiting for its outcome.</summary>
    public sealed class Pending
    {
        internal Pending(int process, string obj, OpKind kind, string value, long invoked)
        {
            Process = process;
            Object = obj;
            Kind = kind;
            Value = value;
            Invoked = invoked;
        }

        public int Process { get; }
        public string Object { get; }
        public OpKind Kind { get; }
        public string Value { get; }
        public long Invoked { get; }
        internal bool Done { get; set; }
    }

    /// <summary>Stamp this right before the operation is handed to the system under test.</summary>
    public Pending Invoke(int process, string obj, OpKind kind, string value = "") =>
        new(process, obj, kind, value, Interlocked.Increment(ref _clock));

    /// <summary>Acknowledged; <paramref name="read"/> is what a read returned.</summary>
    public void Ok(Pending op, string? read = null) =>
        Complete(op, op.Kind == OpKind.Read ? read ?? throw new ArgumentNullException(nameof(read)) : op.Value, OpOutcome.Ok, Interlocked.Increment(ref _clock));

    /// <summary>Definitely not applied.</summary>
    public void Failed(Pending op) => Complete(op, op.Value, OpOutcome.Failed, Interlocked.Increment(ref _clock));

    /// <summary>Outcome unknown: it may take effect at any time after its invocation.</summary>
    public void Unknown(Pending op) => Complete(op, op.Value, OpOutcome.Unknown, long.MaxValue);

    private void Complete(Pending op, string value, OpOutcome outcome, long completed)
    {
        lock (_lock)
        {
            if (op.Done)
            {
                throw new InvalidOperationException("an operation completes once");
            }
            op.Done = true;
            _ops.Add(new HistoryOp(_ops.Count, op.Process, op.Object, op.Kind, value, op.Invoked, completed, outcome));
        }
    }

    /// <summary>Operations completed so far.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _ops.Count;
            }
        }
    }

    public IReadOnlyList<HistoryOp> Ops
    {
        get
        {
            lock (_lock)
            {
                return [.. _ops];
            }
        }
    }
}
