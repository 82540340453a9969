using Microsoft.Extensions.Logging;

namespace Appliance.Tests.Support;

/// <summary>Loggers that keep every line in memory (printed when a test fails); APPLIANCE_TEST_LOG=1 also appends every
/// line to /tmp/appliance-test.log, and APPLIANCE_TEST_LOG=/some/file.log to that file (two runs at once each name
/// their own).</summary>
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

    private static readonly object FileLock = new();

    private static readonly string? LogFile = Environment.GetEnvironmentVariable("APPLIANCE_TEST_LOG") switch
    {
        null or "" or "0" => null,
        "1" => "/tmp/appliance-test.log",
        var path => path,
    };

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
            if (LogFile is { } path)
            {
                // One lock for every daemon's loggers: two appends to the file at once would lose lines or throw.
                lock (FileLock)
                {
                    File.AppendAllText(path, line + "\n");
                }
            }
        }
    }
}
