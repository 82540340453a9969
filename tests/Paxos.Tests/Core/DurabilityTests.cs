using Appliance.Paxos.Core;
using Appliance.Paxos.Storage;
using Appliance.Paxos.Tests.Simulation;

namespace Appliance.Paxos.Tests.Core;

public sealed class DurabilityTests
{
    private sealed class FailingStorage : IPaxosStorage
    {
        public bool Fail { get; set; }

        public PaxosDurableState Load() => new();

        public void Write(PaxosWriteBatch batch)
        {
            if (Fail)
            {
                throw new IOException("disk gone");
            }
        }
    }

    [Fact]
    public void When_the_storage_fails_no_reply_leaves_and_the_member_stops()
    {
        var storage = new FailingStorage();
        var node = new PaxosNode(1, new MemberSet([1, 2, 3]), storage, new KvMachine(), Harness.Options, new Random(1), TimeSpan.FromSeconds(10));
        var later = TimeSpan.FromSeconds(20);
        storage.Fail = true;
        Assert.Throws<IOException>(() => node.Handle(2, new Prepare(new Ballot(3, 2), 1), later));
        Assert.Empty(node.TakeOutput().Messages);
        Assert.Throws<InvalidOperationException>(() => node.Tick(later));
        Assert.Empty(node.TakeOutput().Messages);
    }

    [Fact]
    public void A_member_that_crashes_after_accepting_still_reports_the_value_to_the_next_leader()
    {
        var h = new Harness(3);
        h.Elect(1);
        h[1].Propose(1, 1, KvMachine.Put(1, 9), h.Now);
        h.Collect(1);
        // Only member 2 accepts; then members 1 and 2 crash and member 2 comes back.
        h.Deliver(filter: (_, to, m) => to == 2 && m is Accept);
        h.InFlight.Clear();
        h.Crash(1);
        h.Crash(2);
        h.Start(2, new MemberSet([1, 2, 3]));
        h.Elect(3);
        h.Deliver();
        Assert.Equal(9, h.Machines[3].Map[1]);
        Assert.Equal(9, h.Machines[2].Map[1]);
    }
}
