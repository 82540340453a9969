using Appliance.Platform.Concurrency;

namespace Appliance.Platform.Tests.Concurrency;

/// <summary>The bound on bytes in flight: first come first served, clamped, and a cancelled waiter gives way.</summary>
public class ByteBudgetTests
{
    [Fact]
    public async Task Waiters_are_served_in_order_as_bytes_come_back()
    {
        var budget = new ByteBudget(100);
        Assert.Equal(60, await budget.TakeAsync(60, default));
        var second = budget.TakeAsync(50, default).AsTask();
        var third = budget.TakeAsync(10, default).AsTask();
        Assert.False(second.IsCompleted);
        Assert.False(third.IsCompleted); // fits, but waits behind the second: no overtaking

        budget.Release(60);

        Assert.Equal(50, await second);
        Assert.Equal(10, await third);
        Assert.Equal(60, budget.InUse);
    }

    [Fact]
    public async Task A_request_larger_than_the_budget_is_clamped_and_runs_alone()
    {
        var budget = new ByteBudget(100);
        Assert.Equal(100, await budget.TakeAsync(1_000, default));
        var next = budget.TakeAsync(1, default).AsTask();
        Assert.False(next.IsCompleted);
        budget.Release(100);
        Assert.Equal(1, await next);
    }

    [Fact]
    public async Task A_cancelled_waiter_lets_the_one_behind_it_through()
    {
        var budget = new ByteBudget(100);
        await budget.TakeAsync(60, default);
        using var cts = new CancellationTokenSource();
        var big = budget.TakeAsync(80, cts.Token).AsTask();
        var small = budget.TakeAsync(30, default).AsTask();
        Assert.False(small.IsCompleted);

        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => big);
        Assert.Equal(30, await small);
        Assert.Equal(90, budget.InUse);
    }

    [Fact]
    public async Task Try_take_never_overtakes_a_waiter_and_the_high_water_mark_records_the_most_held()
    {
        var budget = new ByteBudget(100);
        Assert.True(budget.TryTake(70));
        var waiting = budget.WaitAsync(50, default).AsTask();
        Assert.True(budget.HasWaiters);
        Assert.False(budget.TryTake(10)); // 30 are free, but a waiter came first
        budget.Release(70);
        await waiting;
        Assert.False(budget.HasWaiters);
        Assert.Equal(50, budget.InUse);
        Assert.Equal(70, budget.HighWater);
        Assert.Throws<InvalidOperationException>(() => budget.Release(51));
    }
}
