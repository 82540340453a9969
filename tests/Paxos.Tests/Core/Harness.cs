using Appliance.Paxos.Core;
using Appliance.Paxos.Storage;
using Appliance.Paxos.Tests.Simulation;

namespace Appliance.Paxos.Tests.Core;

/// <summary>A hand-driven cluster for rule tests: the test decides which message is delivered when; time is one
/// shared clock the test advances.</summary>
internal sealed class Harness
{
    public static readonly PaxosOptions Options = SimConfig.FastOptions;

    public Dictionary<int, PaxosNode> Nodes { get; } = [];

    public Dictionary<int, MemoryPaxosStorage> Storage { get; } = [];

    public Dictionary<int, KvMachine> Machines { get; } = [];

    public List<(int From, int To, PaxosMessage Message)> InFlight { get; } = [];

    public List<(int Node, ProposalOutcome Outcome)> Completions { get; } = [];

    public Dictionary<long, LogValue> Applied { get; } = [];

    public TimeSpan Now { get; set; } = TimeSpan.FromSeconds(100);

    public PaxosOptions NodeOptions { get; init; } = Options;

    public Harness(int members, int joiners = 0, PaxosOptions? options = null)
    {
        NodeOptions = options ?? Options;
        var set = new MemberSet(Enumerable.Range(1, members));
        for (var id = 1; id <= members + joiners; id++)
        {
            Storage[id] = new MemoryPaxosStorage();
            Start(id, id <= members ? set : MemberSet.Empty);
        }
    }

    public PaxosNode Start(int id, MemberSet initial)
    {
        Machines[id] = new KvMachine();
        var node = new PaxosNode(id, initial, Storage[id], Machines[id], NodeOptions, new Random(id), Now, (i, v) => Applied[i] = v);
        Nodes[id] = node;
        return node;
    }

    public PaxosNode this[int id] => Nodes[id];

    public void Collect(int id)
    {
        var output = Nodes[id].TakeOutput();
        foreach (var m in output.Messages)
        {
            InFlight.Add((id, m.To, m.Message));
        }
        foreach (var c in output.Completions)
        {
            Completions.Add((id, c));
        }
    }

    public void Tick(int id)
    {
        Nodes[id].Tick(Now);
        Collect(id);
    }

    public void Advance(TimeSpan by) => Now += by;

    /// <summary>Delivers matching in-flight messages (and what they cause) until none match.</summary>
    public void Deliver(Func<int, int, PaxosMessage, bool>? filter = null, int maxRounds = 100)
    {
        for (var round = 0; round < maxRounds; round++)
        {
            var batch = InFlight.Where(m => filter?.Invoke(m.From, m.To, m.Message) ?? true).ToList();
            if (batch.Count == 0)
            {
                return;
            }
            foreach (var m in batch)
            {
                InFlight.Remove(m);
            }
            foreach (var (from, to, message) in batch)
            {
                if (Nodes.TryGetValue(to, out var node))
                {
                    node.Handle(from, message, Now);
                    Collect(to);
                }
            }
        }
    }

    public void Drop(Func<int, int, PaxosMessage, bool> filter) => InFlight.RemoveAll(m => filter(m.From, m.To, m.Message));

    /// <summary>Runs the election timer of <paramref name="id"/> out and lets the cluster settle.</summary>
    public void Elect(int id)
    {
        Advance(NodeOptions.ElectionTimeout * 2.1);
        Tick(id);
        Deliver();
        Assert.True(Nodes[id].Role == PaxosRole.Leader, string.Join("\n", Nodes.Values.Select(n => n.Describe())));
    }

    public void Crash(int id)
    {
        Nodes.Remove(id);
        Storage[id].Crash();
        InFlight.RemoveAll(m => m.To == id || m.From == id);
    }
}
