using Appliance.Tests.Common.History;

namespace Appliance.Osd.Tests.History;

/// <summary>The history checker of tests/Common/History on histories whose verdict is known: it must accept the
/// linearizable ones and refuse the rest (else the exactly-once test could not fail).</summary>
public sealed class LinearizabilityCheckerTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const long Never = long.MaxValue;

    private static HistoryOp W(int id, string v, long from, long to, OpOutcome outcome = OpOutcome.Ok, int p = 0, string obj = "o") =>
        new(id, p, obj, OpKind.WriteFull, v, from, to, outcome);

    private static HistoryOp A(int id, string v, long from, long to, OpOutcome outcome = OpOutcome.Ok, int p = 0, string obj = "o") =>
        new(id, p, obj, OpKind.Append, v, from, to, outcome);

    private static HistoryOp R(int id, string v, long from, long to, int p = 0, string obj = "o") =>
        new(id, p, obj, OpKind.Read, v, from, to, OpOutcome.Ok);

    private static CheckResult One(params HistoryOp[] ops) => Assert.Single(LinearizabilityChecker.Check(ops));

    private static void Good(params HistoryOp[] ops)
    {
        var r = One(ops);
        Assert.True(r.Ok, r.Explanation);
    }

    private static void Bad(params HistoryOp[] ops)
    {
        var r = One(ops);
        Assert.False(r.Inconclusive, r.Explanation);
        Assert.False(r.Linearizable, "a history that is not linearizable was accepted");
        Assert.Contains("NOT linearizable", r.Explanation, StringComparison.Ordinal);
    }

    [Fact]
    public void A_sequential_history_is_linearizable() =>
        Good(R(0, "", 1, 2), W(1, "a", 3, 4), R(2, "a", 5, 6), A(3, "x", 7, 8), A(4, "y", 9, 10), R(5, "axy", 11, 12));

    [Fact]
    public void A_stale_read_is_not() => Bad(W(0, "a", 1, 2), W(1, "b", 3, 4), R(2, "a", 5, 6));

    [Fact]
    public void A_read_concurrent_with_a_write_may_see_either_value()
    {
        Good(W(0, "a", 1, 2), W(1, "b", 3, 8), R(2, "a", 4, 5, p: 1));
        Good(W(0, "a", 1, 2), W(1, "b", 3, 8), R(2, "b", 4, 5, p: 1));
        // ...but once one reader saw the new value, a later reader must not see the old one.
        Bad(W(0, "a", 1, 2), W(1, "b", 3, 20), R(2, "b", 4, 5, p: 1), R(3, "a", 6, 7, p: 2));
    }

    [Fact]
    public void An_append_applied_twice_is_not()
    {
        Bad(A(0, "x", 1, 2), R(1, "xx", 3, 4));
        // Not even one whose outcome is unknown: it may take effect once, not twice.
        Bad(A(0, "x", 1, Never, OpOutcome.Unknown), R(1, "xx", 3, 4));
    }

    [Fact]
    public void An_acknowledged_append_that_is_lost_is_not() => Bad(A(0, "x", 1, 2), A(1, "y", 3, 4), R(2, "y", 5, 6));

    [Fact]
    public void Appends_take_effect_in_one_order_for_every_reader()
    {
        Good(A(0, "x", 1, 10), A(1, "y", 2, 11, p: 1), R(2, "yx", 12, 13));
        Bad(A(0, "x", 1, 10), A(1, "y", 2, 11, p: 1), R(2, "xy", 12, 13), R(3, "yx", 14, 15));
    }

    [Fact]
    public void A_refused_write_must_not_be_seen_but_one_of_unknown_outcome_may()
    {
        Bad(W(0, "a", 1, 2), W(1, "b", 3, 4, OpOutcome.Failed), R(2, "b", 5, 6));
        Good(W(0, "a", 1, 2), W(1, "b", 3, Never, OpOutcome.Unknown), R(2, "b", 5, 6));
        Good(W(0, "a", 1, 2), W(1, "b", 3, Never, OpOutcome.Unknown), R(2, "a", 5, 6));
    }

    [Fact]
    public void An_unknown_operation_takes_effect_at_most_once_and_not_before_its_invocation()
    {
        // Late: it may land long after it was given up on.
        Good(A(0, "x", 1, Never, OpOutcome.Unknown), R(1, "", 2, 3), R(2, "x", 10, 11));
        // Once seen, it stays.
        Bad(A(0, "x", 1, Never, OpOutcome.Unknown), R(1, "x", 2, 3), R(2, "", 4, 5));
        // Never before it was invoked.
        Bad(R(0, "x", 1, 2), A(1, "x", 3, Never, OpOutcome.Unknown));
    }

    [Fact]
    public void Objects_are_judged_apart()
    {
        var results = LinearizabilityChecker.Check([W(0, "a", 1, 2, obj: "one"), R(1, "a", 3, 4, obj: "two"), R(2, "a", 5, 6, obj: "one")]);
        Assert.Equal(2, results.Count);
        Assert.True(results.Single(r => r.Object == "one").Ok);
        Assert.False(results.Single(r => r.Object == "two").Linearizable);
    }

    /// <summary>A large concurrent history made linearizable by construction (each operation takes effect at a point
    /// inside its window), with some outcomes unknown; then one read is spoiled.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Generated_histories_are_accepted_and_a_spoiled_read_is_refused(int seed)
    {
        var rng = new Random(seed);
        var ops = new List<HistoryOp>();
        var state = "";
        var states = new List<string>();
        for (var point = 1; point <= 120; point++)
        {
            // Windows around the linearization point, up to 4 points wide on either side: several overlap.
            var from = (point * 100L) - rng.Next(1, 400);
            var to = (point * 100L) + rng.Next(1, 400);
            var p = point % 8;
            switch (rng.Next(10))
            {
                case < 4:
                    ops.Add(R(ops.Count, state, from, to, p));
                    break;
                case < 8:
                    var record = $"[{point}]";
                    state += record;
                    ops.Add(A(ops.Count, record, from, rng.Next(8) == 0 ? Never : to, rng.Next(8) == 0 ? OpOutcome.Unknown : OpOutcome.Ok, p));
                    break;
                case 8:
                    state = $"<{point}>";
                    ops.Add(W(ops.Count, state, from, to, OpOutcome.Ok, p));
                    break;
                default:
                    // Given up on, and it never took effect.
                    ops.Add(A(ops.Count, $"(lost {point})", from, Never, OpOutcome.Unknown, p));
                    break;
            }
            states.Add(state);
        }
        ops = [.. ops.Select(o => o.Outcome == OpOutcome.Unknown ? o with { Completed = Never } : o)];
        var good = One([.. ops]);
        Assert.True(good.Ok, good.Explanation);
        output.WriteLine($"seed {seed}: {good.Ops} operations checked in {good.Steps} steps");

        // A late read returns a state from long before: stale.
        var late = ops.Last(o => o.Kind == OpKind.Read);
        var stale = states.Take(states.Count - 30).Last(s => s != late.Value && !late.Value.StartsWith(s, StringComparison.Ordinal) && s.Length > 0);
        var spoiled = One([.. ops.Select(o => o.Id == late.Id ? o with { Value = stale } : o)]);
        Assert.False(spoiled.Linearizable, $"a stale read was accepted: {late} spoiled to {stale}");
        Assert.False(spoiled.Inconclusive, spoiled.Explanation);

        // A read sees a record twice.
        var withRecord = ops.Last(o => o.Kind == OpKind.Read && o.Value.Contains('['));
        var record2 = withRecord.Value[withRecord.Value.LastIndexOf('[')..];
        var doubled = One([.. ops.Select(o => o.Id == withRecord.Id ? o with { Value = o.Value + record2 } : o)]);
        Assert.False(doubled.Linearizable, $"a record read twice was accepted: {withRecord}");
    }
}
