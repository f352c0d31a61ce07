import Foundation
import KeyholdCore
import SQLiteNIO

