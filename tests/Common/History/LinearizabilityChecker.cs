using System.Text;

namespace Appliance.Tests.Common.History;

/// <summary>The checker's verdict on one object's history (or the first object that failed).</summary>
public sealed record CheckResult(string Object, bool Linearizable, bool Inconclusive, int Ops, long Steps, string Explanation)
{
    public bool Ok => Linearizable && !Inconclusive;
}

/// <summary>
/// Per-object linearizability of a history of whole-object writes, appends and reads (<see cref="OpKind"/>), by the
/// Wing–Gong search with Lowe's memoisation (as Porcupine does it): walk the events in time order, linearize a
/// pending operation whose effect the model allows, backtrack when an operation returns before it could be
/// linearized, and never revisit a (set of linearized operations, state) pair. Objects are independent (a
/// register per object is a local property, so per-object histories compose). Acknowledged operations must be
/// linearized between their invocation and completion; operations of unknown outcome may be linearized at any
/// point after their invocation (they complete at infinity: linearized after everything else, they had no
/// visible effect); refused operations and reads of unknown outcome are left out. The search is exponential in the
/// worst case: keep per-object histories small (≤ ~200 operations); past <c>maxSteps</c> the verdict is
/// inconclusive rather than wrong.
/// </summary>
public static class LinearizabilityChecker
{
    /// <summary>Checks every object; returns one result per object (a test asserts all are <see cref="CheckResult.Ok"/>).</summary>
    public static IReadOnlyList<CheckResult> Check(IEnumerable<HistoryOp> history, long maxSteps = 20_000_000) =>
        [.. history.GroupBy(o => o.Object).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => CheckObject(g.Key, [.. g], maxSteps))];

    /// <summary>The model: a missing object reads as empty; a write sets, an append extends, a read must see the
    /// state. Null: the operation cannot take effect in this state.</summary>
    private static string? Step(string state, HistoryOp op) => op.Kind switch
    {
        OpKind.WriteFull => op.Value,
        OpKind.Append => state + op.Value,
        OpKind.Read => string.Equals(state, op.Value, StringComparison.Ordinal) ? state : null,
        _ => throw new ArgumentOutOfRangeException(nameof(op)),
    };

    private sealed class Node
    {
        public HistoryOp? Op;
        public int Index;
        public bool IsCall;
        public long Time;
        public Node? Match;
        public Node? Prev;
        public Node? Next;
    }

    public static CheckResult CheckObject(string obj, IReadOnlyList<HistoryOp> all, long maxSteps = 20_000_000)
    {
        var reads = all.Where(o => o.Outcome == OpOutcome.Ok && o.Kind == OpKind.Read).Select(o => o.Value).Distinct().ToList();
        // An operation of unknown outcome that no read observed is left out: while its effect lasts, every state
        // holds its value (an append's as a part, a write's as the start), so if no read returned such a state it was
        // never seen — placed right before a write that erased it, or after the last read — which is the same as
        // never applied. Without this, each unseen one doubles the subsets the search may visit.
        var ops = all.Where(o => o.Outcome == OpOutcome.Ok
            || (o.Outcome == OpOutcome.Unknown && o.Kind != OpKind.Read && Observed(o, reads))).ToList();
        if (ops.Any(o => o.Outcome == OpOutcome.Ok && o.Completed <= o.Invoked))
        {
            throw new ArgumentException("an operation completed before it was invoked");
        }
        // Events in time order: a call at its invocation, a return at its completion (unknown outcomes at infinity,
        // after every known event; among themselves in any order).
        var events = new List<Node>(ops.Count * 2);
        for (var i = 0; i < ops.Count; i++)
        {
            var call = new Node { Op = ops[i], Index = i, IsCall = true, Time = ops[i].Invoked };
            var ret = new Node { Op = ops[i], Index = i, IsCall = false, Time = ops[i].Completed, Match = call };
            call.Match = ret;
            events.Add(call);
            events.Add(ret);
        }
        events.Sort((a, b) => a.Time != b.Time ? a.Time.CompareTo(b.Time) : a.IsCall != b.IsCall ? (a.IsCall ? -1 : 1) : a.Index.CompareTo(b.Index));
        var head = new Node();
        var prev = head;
        foreach (var e in events)
        {
            prev.Next = e;
            e.Prev = prev;
            prev = e;
        }

        var linearized = new ulong[(ops.Count + 63) / 64];
        var seen = new HashSet<Key>(KeyComparer.Instance);
        var calls = new Stack<(Node Entry, string State)>();
        var state = "";
        var entry = head.Next;
        long steps = 0;
        // The deepest partial linearization, for the explanation of a failure.
        var best = new List<HistoryOp>();
        var bestState = "";
        while (head.Next is not null)
        {
            if (++steps > maxSteps)
            {
                return new CheckResult(obj, false, true, ops.Count, steps,
                    $"object {obj}: no verdict within {maxSteps} steps ({ops.Count} operations); the history is too large or too concurrent to check");
            }
            if (entry!.IsCall)
            {
                var next = Step(state, entry.Op!);
                if (next is not null)
                {
                    var bits = (ulong[])linearized.Clone();
                    bits[entry.Index / 64] |= 1UL << (entry.Index % 64);
                    if (seen.Add(new Key(bits, next)))
                    {
                        calls.Push((entry, state));
                        state = next;
                        linearized = bits;
                        Lift(entry);
                        if (calls.Count > best.Count)
                        {
                            best = [.. calls.Reverse().Select(c => c.Entry.Op!)];
                            bestState = state;
                        }
                        entry = head.Next;
                        continue;
                    }
                }
                entry = entry.Next;
            }
            else
            {
                // An operation returned before it could be linearized: undo the latest choice and try the next.
                if (calls.Count == 0)
                {
                    return new CheckResult(obj, false, false, ops.Count, steps, Explain(obj, ops.Count, best, bestState, ops));
                }
                var (undo, before) = calls.Pop();
                state = before;
                linearized = (ulong[])linearized.Clone();
                linearized[undo.Index / 64] &= ~(1UL << (undo.Index % 64));
                Unlift(undo);
                entry = undo.Next;
            }
        }
        return new CheckResult(obj, true, false, ops.Count, steps, $"object {obj}: {ops.Count} operations linearizable");
    }

    private static bool Observed(HistoryOp op, List<string> reads) => op.Kind == OpKind.WriteFull
        ? reads.Any(r => r.StartsWith(op.Value, StringComparison.Ordinal))
        : reads.Any(r => r.Contains(op.Value, StringComparison.Ordinal));

    private static void Lift(Node call)
    {
        call.Prev!.Next = call.Next;
        call.Next!.Prev = call.Prev;
        var ret = call.Match!;
        ret.Prev!.Next = ret.Next;
        if (ret.Next is not null)
        {
            ret.Next.Prev = ret.Prev;
        }
    }

    private static void Unlift(Node call)
    {
        var ret = call.Match!;
        ret.Prev!.Next = ret;
        if (ret.Next is not null)
        {
            ret.Next.Prev = ret;
        }
        call.Prev!.Next = call;
        call.Next!.Prev = call;
    }

    private static string Explain(string obj, int count, List<HistoryOp> best, string state, List<HistoryOp> ops)
    {
        var placed = best.Select(o => o.Id).ToHashSet();
        var sb = new StringBuilder();
        sb.AppendLine($"object {obj}: NOT linearizable ({count} operations). The longest linearization found places {best.Count}:");
        foreach (var o in best.TakeLast(12))
        {
            sb.AppendLine($"  {o}");
        }
        sb.AppendLine($"  → state {HistoryOp.Shorten(state)}");
        var deadline = ops.Where(o => !placed.Contains(o.Id)).Min(o => (long?)o.Completed) ?? long.MaxValue;
        sb.AppendLine("and then cannot place any of (invoked before the first of them returned):");
        foreach (var o in ops.Where(o => !placed.Contains(o.Id) && o.Invoked < deadline).OrderBy(o => o.Invoked).Take(12))
        {
            sb.AppendLine($"  {o}");
        }
        return sb.ToString();
    }

    private readonly record struct Key(ulong[] Bits, string State);

    private sealed class KeyComparer : IEqualityComparer<Key>
    {
        public static readonly KeyComparer Instance = new();

        public bool Equals(Key a, Key b) => a.Bits.AsSpan().SequenceEqual(b.Bits) && string.Equals(a.State, b.State, StringComparison.Ordinal);

        public int GetHashCode(Key k)
        {
            var h = new HashCode();
            foreach (var w in k.Bits)
            {
                h.Add(w);
            }
            h.Add(k.State.GetHashCode(StringComparison.Ordinal));
            return h.ToHashCode();
        }
    }
}
