namespace Appliance.Paxos.Tests.Simulation;

public enum KvOpKind
{
    Put,
    Cas,
    Get,
}

/// <summary>One client operation on one key as the client saw it. <see cref="Response"/> is null when the outcome is
/// unknown (timed out, node crashed): the operation may have taken effect at any point after its invocation, or never.</summary>
public sealed record KvOp(int Client, KvOpKind Kind, int Key, long Value, long Expected, long Invoke, long? Response, bool? CasOk, long? ReadValue, int Node = 0)
{
    public override string ToString() =>
        $"c{Client} {Kind} k{Key} " + Kind switch
        {
            KvOpKind.Put => $"{Value}",
            KvOpKind.Cas => $"{Expected}->{Value} = {(CasOk is { } ok ? ok.ToString() : "?")}",
            _ => $"= {ReadValue}",
        } + $" [{Invoke}, {(Response is { } r ? r.ToString() : "inf")}]";
}

/// <summary>
/// A Wing–Gong style linearizability checker for a register per key (keys are independent, so each key's history is
/// checked alone). Depth-first search over the operations that may come next (invoked before every pending
/// operation's response), memoised on (set linearized, register value). Operations with an unknown outcome may be
/// linearized anywhere after their invocation or left out.
/// </summary>
public static class Linearizability
{
    public const int MaxOpsPerKey = 120;

    /// <summary>Returns null when linearizable, else a description of the key's history that is not.</summary>
    public static string? Check(IReadOnlyList<KvOp> history)
    {
        foreach (var group in history.GroupBy(o => o.Key))
        {
            var ops = group.OrderBy(o => o.Invoke).ToArray();
            if (ops.Length > MaxOpsPerKey)
            {
                throw new InvalidOperationException($"{ops.Length} operations on key {group.Key}: the simulation must cap them at {MaxOpsPerKey}");
            }
            if (!CheckKey(ops))
            {
                return $"key {group.Key} is not linearizable:\n  " + string.Join("\n  ", ops.Select(o => o.ToString()));
            }
        }
        return null;
    }

    private static bool CheckKey(KvOp[] ops)
    {
        UInt128 known = 0;
        for (var i = 0; i < ops.Length; i++)
        {
            if (ops[i].Response is not null)
            {
                known |= UInt128.One << i;
            }
        }
        var memo = new HashSet<(UInt128, long)>();
        return Search(ops, known, 0, 0, memo);
    }

    private static bool Search(KvOp[] ops, UInt128 known, UInt128 done, long state, HashSet<(UInt128, long)> memo)
    {
        if ((done & known) == known)
        {
            return true;
        }
        if (!memo.Add((done, state)))
        {
            return false;
        }
        var minResponse = long.MaxValue;
        for (var i = 0; i < ops.Length; i++)
        {
            if ((done & (UInt128.One << i)) == 0 && ops[i].Response is { } r && r < minResponse)
            {
                minResponse = r;
            }
        }
        for (var i = 0; i < ops.Length; i++)
        {
            var bit = UInt128.One << i;
            if ((done & bit) != 0)
            {
                continue;
            }
            var op = ops[i];
            if (op.Invoke > minResponse)
            {
                break; // sorted by invocation: every later one starts after some pending operation returned
            }
            if (Step(op, state, out var next) && Search(ops, known, done | bit, next, memo))
            {
                return true;
            }
        }
        return false;
    }

    private static bool Step(KvOp op, long state, out long next)
    {
        next = state;
        switch (op.Kind)
        {
            case KvOpKind.Put:
                next = op.Value;
                return true;
            case KvOpKind.Get:
                return op.ReadValue == state;
            default:
                var succeeds = state == op.Expected;
                if (op.CasOk is { } ok && ok != succeeds)
                {
                    return false;
                }
                if (succeeds)
                {
                    next = op.Value;
                }
                return true;
        }
    }
}
