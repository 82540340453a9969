using Microsoft.Extensions.Logging;

namespace Appliance.Tests.Support;

/// <summary>Loggers that keep every line in memory (printed when a test fails, or always with APPLIANCE_TEST_LOG=1).</summary>
internal sealed class MemoryLoggers(string prefix) : ILoggerFactory
{
    private readonly string _prefix = prefix;
    private readonly List<string> _lines = [];

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(MemoryLoggers owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var line = $"{DateTime.UtcNow:HH:mm:ss.fff} {owner._prefix} {logLevel} {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception)}";
            lock (owner._lines)
            {
                owner._lines.Add(line);
            }
            if (Environment.GetEnvironmentVariable("APPLIANCE_TEST_LOG") == "1")
            {
                lock (owner._lines)
                {
                    File.AppendAllText("/tmp/appliance-test.log", line + "\n");
                }
            }
        }
    }
}
